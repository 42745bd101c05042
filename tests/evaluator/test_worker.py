"""The evaluate worker against a real in-process API: failures the candidate caused, and a full pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from database.worker import run_one
from evaluator import worker


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def file_checkpoint(run_dir: Path, index: int, source, seed: int = 0) -> Path:
    """Put a checkpoint where the trainer files it: RUN_DIR/checkpoints/<index>/seed-<seed>."""
    home = run_dir / "checkpoints" / str(index) / f"seed-{seed}"
    shutil.copytree(source, home)
    return home


async def leased_job(client, experiment: dict, payload: dict) -> dict:
    await client.create_job(kind="evaluate", experiment=experiment["index"], payload=payload)
    return await client.lease_job(["evaluate"], "evaluator-test")


async def test_no_checkpoint_fails_the_candidate_with_its_reason(api_client):
    experiment = await api_client.create_experiment(name="untrained", program="class DeltaNet: pass")
    job = await leased_job(api_client, experiment, {"fidelity": "smoke"})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "failed"
    failed = await api_client.get_job(job["id"])
    assert failed["status"] == "failed" and "no checkpoint to evaluate" in failed["error"]
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["status"] == "failed" and stored["failure"]["stage"] == "evaluate"
    assert "no checkpoint to evaluate" in stored["failure"]["reason"]


async def test_a_vanished_checkpoint_is_not_retried(api_client, tmp_path):
    experiment = await api_client.create_experiment(name="lost", program="class DeltaNet: pass")
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 3.0, "checkpoint": str(tmp_path / "gone")})
    job = await leased_job(api_client, experiment, {"fidelity": "smoke"})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "failed"
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["status"] == "failed" and "is missing" in stored["failure"]["reason"]
    assert (await api_client.get_job(job["id"]))["status"] == "failed"  # not queued again for a retry


async def test_a_stored_path_never_leads_the_evaluator_out_of_the_run(api_client, checkpoint_dir, run_dir):
    # A real checkpoint sits at the path a document names, but nothing is filed under the run: refused.
    experiment = await api_client.create_experiment(name="elsewhere", program="class DeltaNet: pass")
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 3.0, "checkpoint": str(checkpoint_dir), "seeds": [0]})
    job = await leased_job(api_client, experiment, {"fidelity": "smoke"})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "failed"
    reason = (await api_client.get_experiment(experiment["index"]))["failure"]["reason"]
    assert str(run_dir / "checkpoints" / str(experiment["index"]) / "seed-0") in reason and "is missing" in reason


async def test_a_checkpoint_whose_program_changed_is_refused(api_client, checkpoint_dir, run_dir):
    experiment = await api_client.create_experiment(name="swapped", program="class DeltaNet: pass")
    home = file_checkpoint(run_dir, experiment["index"], checkpoint_dir)
    (home / "program.py").write_text((home / "program.py").read_text() + "\n# swapped after training\n")
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 3.0, "checkpoint": str(home), "seeds": [0]})
    job = await leased_job(api_client, experiment, {"fidelity": "smoke"})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "failed"
    assert "does not match the sha256" in (await api_client.get_experiment(experiment["index"]))["failure"]["reason"]


async def test_evaluates_stores_scores_and_costs(api_client, checkpoint_dir, bench_cache, monkeypatch, run_dir):
    monkeypatch.setattr(worker, "default_cache_dir", lambda: bench_cache)
    experiment = await api_client.create_experiment(name="seed", program="class DeltaNet: pass")
    home = file_checkpoint(run_dir, experiment["index"], checkpoint_dir)
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 3.0, "checkpoint": str(home)})
    job = await leased_job(api_client, experiment, {"fidelity": "smoke", "eval_limit": 4})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "succeeded"
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["status"] == "evaluated"
    assert set(stored["eval"]["tasks"]) == set(worker.TIERS["smoke"]["tasks"])
    assert stored["eval"]["recall"] is not None and stored["costs"]["cpu_seconds"] > 0
    result = (await api_client.get_job(job["id"]))["result"]
    assert result["experiment"] == experiment["index"] and result["tier"] == "smoke"
    analyse = (await api_client.list_jobs(kind="analyse"))
    assert analyse["count"] == 1


def test_unknown_fidelity_is_the_candidates_fault():
    with pytest.raises(worker.CandidateError, match="tier"):
        worker.tier_of({"payload": {"fidelity": "galactic"}}, {})
    assert worker.tier_of({"payload": {}}, {"fidelity": "explore"}) == "explore"


async def test_synthetic_checkpoints_of_every_seed_are_scored_and_merged(api_client, tmp_path, run_dir, monkeypatch):
    from trainer.fidelity import get_fidelity
    from trainer.layers import seed_program
    from trainer.train import train

    fidelity = get_fidelity("synthetic", {"steps": 4, "warmup_steps": 2, "eval_batches": 1})
    checkpoints = []
    for seed in (0, 1):
        result = train(seed_program(), fidelity, tmp_path / f"seed-{seed}", seed=seed, progress=False,
                       cache_dir=tmp_path / "cache")
        assert result["status"] == "ok" and set(result["tasks"]) >= {"mqar_8", "compression", "memorization"}
        checkpoints.append(result["checkpoint"])
    experiment = await api_client.create_experiment(name="seed", program=seed_program(), fidelity="synthetic")
    homes = [str(file_checkpoint(run_dir, experiment["index"], c, seed)) for seed, c in enumerate(checkpoints)]
    monkeypatch.setattr(worker, "default_cache_dir", lambda: tmp_path / "eval-cache")
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 5.0, "checkpoint": homes[0], "checkpoints": homes,
                                              "seeds": [0, 1]})
    job = await leased_job(api_client, experiment, {"fidelity": "synthetic"})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "succeeded"

    scores = (await api_client.get_experiment(experiment["index"]))["eval"]
    assert scores["seeds"] == 2 and scores["tier"] == "synthetic"
    mqar = scores["tasks"]["mqar_8"]
    assert mqar["stats"]["n"] == 2 and mqar["value"] == pytest.approx(mqar["stats"]["mean"])
    assert scores["average_stats"]["n"] == 2 and scores["benchmark_stats"]["n"] == 2
    assert 0.0 <= scores["average"] <= 1.0 and scores["perplexity"] is None
