"""The train worker: hostile programs fail with their reason, the worker keeps serving, repairs are handed off."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.worker import CandidateError, Outcome, serve
from trainer.checkpoint import load_checkpoint
from trainer.layers import seed_program
from trainer.sandbox import MachineBusy
from trainer.worker import handle_train


async def test_a_hostile_program_fails_and_the_next_one_trains(api_client, program, tiny_overrides, tmp_path,
                                                               monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("RUN_DIR", str(run_dir))
    hostile = await api_client.create_experiment(name="loops_forever", program=program("loop_in_forward"))
    good = await api_client.create_experiment(name="seed", program=seed_program())
    await api_client.create_job(kind="train", experiment=hostile["index"], payload={
        "fidelity": "smoke", "overrides": {**tiny_overrides, "steps": 5, "cpu_s": 8}, "max_repairs": 0})
    await api_client.create_job(kind="train", experiment=good["index"], payload={
        "fidelity": "smoke", "overrides": {**tiny_overrides, "steps": 10}})

    assert await serve(api_client, ["train"], handle_train, max_jobs=2, poll_interval_s=0.05) == 2

    failed = await api_client.get_experiment(hostile["index"])
    assert failed["status"] == "failed" and failed["failure"]["stage"] == "train"
    assert "training failed: CPU-time limit: killed by signal SIGXCPU after using its" in failed["failure"]["reason"]
    assert not (run_dir / "checkpoints" / str(hostile["index"])).exists()

    trained = await api_client.get_experiment(good["index"])
    assert trained["status"] == "trained"
    checkpoint = run_dir / "checkpoints" / str(good["index"]) / "seed-0"
    assert Path(trained["train"]["checkpoint"]) == checkpoint.resolve()
    assert trained["train"]["checkpoints"] == [str(checkpoint.resolve())]
    assert load_checkpoint(checkpoint).config["program_sha256"]
    assert trained["train"]["steps_done"] == 10 and trained["train"]["val_loss"] < trained["train"]["val_loss_start"]
    assert trained["costs"]["cpu_seconds"] > 0
    # The chain goes on to evaluation for the trained experiment only, and the sandbox is cleaned up.
    evaluate = (await api_client.list_jobs(kind="evaluate"))["data"]
    assert [job["experiment"] for job in evaluate] == [good["index"]]
    assert not any((run_dir / "sandbox").glob(f"train-{good['index']}-*"))


async def test_a_crash_with_repairs_left_goes_back_to_the_engineer(api_client, program, tiny_overrides, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    experiment = await api_client.create_experiment(name="crashes", program=program("crash_in_forward"))
    payload = {"fidelity": "smoke", "overrides": {**tiny_overrides, "steps": 3}}
    job = await api_client.create_job(kind="train", experiment=experiment["index"], payload=payload)

    outcome = await handle_train(job, api_client)

    assert isinstance(outcome, Outcome)
    assert outcome.result == {"failed": "RuntimeError: deliberate crash in forward", "repair": 1}
    [follow_up] = outcome.next_jobs
    assert follow_up["kind"] == "engineer" and follow_up["experiment"] == experiment["index"]
    assert follow_up["payload"]["repairs"] == 1 and follow_up["payload"]["overrides"] == payload["overrides"]
    repair = follow_up["payload"]["repair"]
    assert repair["stage"] == "train"
    assert repair["error"].startswith("RuntimeError: deliberate crash in forward\n")
    assert "Traceback (most recent call last)" in repair["error"] and "in forward" in repair["error"]
    assert (await api_client.get_experiment(experiment["index"]))["status"] != "failed"


async def test_every_seed_trains_in_its_own_sandbox_and_the_record_keeps_mean_and_se(api_client, tiny_overrides,
                                                                                     tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("RUN_DIR", str(run_dir))
    experiment = await api_client.create_experiment(name="seed", program=seed_program())
    overrides = {**tiny_overrides, "steps": 8, "replicates": 2}
    job = await api_client.create_job(kind="train", experiment=experiment["index"],
                                      payload={"fidelity": "smoke", "overrides": overrides, "seed": 5})

    result = await handle_train(job, api_client)

    train = (await api_client.get_experiment(experiment["index"]))["train"]
    assert result["seeds"] == train["seeds"] == [5, 6]
    stats = train["val_loss_stats"]
    assert stats["n"] == 2 and len(stats["per_seed"]) == 2 and stats["per_seed"][0] != stats["per_seed"][1]
    assert train["val_loss"] == stats["mean"] and stats["se"] > 0
    home = run_dir / "checkpoints" / str(experiment["index"])
    assert train["checkpoints"] == [str((home / "seed-5").resolve()), str((home / "seed-6").resolve())]
    assert [load_checkpoint(home / s).config["seed"] for s in ("seed-5", "seed-6")] == [5, 6]


async def test_a_wall_clock_timeout_is_retried_as_a_busy_machine_not_blamed_on_the_program(api_client, program,
                                                                                           tiny_overrides, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    experiment = await api_client.create_experiment(name="sleeps", program=program("sleep_in_forward"))
    job = await api_client.create_job(kind="train", experiment=experiment["index"], payload={
        "fidelity": "smoke", "overrides": {**tiny_overrides, "steps": 3, "timeout_s": 10}})

    with pytest.raises(MachineBusy, match="too busy: training seed 0 ran past its wall-clock backstop of 10 s"):
        await handle_train(job, api_client)
    assert (await api_client.get_experiment(experiment["index"]))["status"] != "failed"


@pytest.mark.parametrize("overrides, message", [
    ({"memory_mb": 10**6}, "memory_mb=1000000 is over this worker's limit of 6144"),
    ({"timeout_s": 10**6}, "timeout_s=1000000 is over this worker's limit of 1800"),
    ({"dataset": "/etc/*.conf"}, "outside this worker's data roots"),
])
async def test_a_payload_asking_more_than_the_worker_allows_is_refused(api_client, tmp_path, monkeypatch, overrides,
                                                                        message):
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    experiment = await api_client.create_experiment(name="seed", program=seed_program())
    job = await api_client.create_job(kind="train", experiment=experiment["index"],
                                      payload={"fidelity": "smoke", "overrides": overrides})
    with pytest.raises(CandidateError, match=message):
        await handle_train(job, api_client)
    assert not (tmp_path / "run" / "cache").exists()  # refused before any data was read
