"""Steering by hand: submitted programs (origin human), vetoes, pause and resume, and the record of each."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from database.client import ApiError
from database.worker import serve
from tests.conftest import TEST_TOKEN

PROGRAM = "class DeltaNet:\n    pass\n"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def raw(api_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api") as client:
        yield client


async def scored(api_client, store, name: str, fitness: float, **extra) -> dict:
    """An analysed experiment with finite results, as the analyst leaves it."""
    experiment = await api_client.create_experiment(name=name, program=PROGRAM, **extra)
    await store.update_experiment(index=experiment["index"], fields={
        "status": "analysed", "fitness": fitness, "train": {"val_loss": 3.0}, "eval": {"average": 0.4}})
    return experiment


async def test_a_submitted_program_is_a_human_candidate_with_its_check_queued(api_client, raw):
    # The run's own chain at smoke: the submitted program is trained with the same seed and lease.
    seed = await api_client.create_experiment(name="seed", program=PROGRAM, origin="seed", is_baseline=True)
    await api_client.create_job(kind="engineer", experiment=seed["index"], timeout=45, max_attempts=4,
                                payload={"fidelity": "smoke", "seed": 3, "lease_s": 45, "seeds": [9]})
    response = await raw.post("/programs", json={"program": PROGRAM, "name": None, "motivation": "try a gate",
                                                 "parent": seed["index"], "fidelity": None, "actor": "alice"},
                              headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert response.status_code == 201, response.text
    experiment = response.json()
    assert experiment["origin"] == "human" and experiment["status"] == "proposed"
    assert experiment["parent"] == seed["index"] and experiment["fidelity"] == "smoke"
    assert experiment["motivation"] == "try a gate" and experiment["name"].startswith("human-")
    jobs = (await api_client.list_jobs(experiment=experiment["index"]))["data"]
    assert [(j["kind"], j["status"]) for j in jobs] == [("engineer", "queued")]
    assert jobs[0]["payload"] == {"fidelity": "smoke", "seed": 3, "lease_s": 45}
    assert jobs[0]["timeout"] == 45 and jobs[0]["max_attempts"] == 4
    # The same program again gets a name of its own; a taken name is a 409.
    again = await api_client.submit_program(program=PROGRAM)
    assert again["name"] != experiment["name"] and again["origin"] == "human"
    with pytest.raises(ApiError) as err:
        await api_client.submit_program(program=PROGRAM, name=experiment["name"])
    assert err.value.status == 409


async def test_a_submitted_program_goes_through_every_stage(api_client):
    experiment = await api_client.submit_program(program=PROGRAM, fidelity="smoke")
    stages = []

    async def handle(job, client):
        stages.append((job["kind"], job["experiment"]))
        return {}

    await serve(api_client, ["engineer", "train", "evaluate", "analyse"], handle, idle_timeout_s=0.1,
                poll_interval_s=0.05)
    assert stages == [(kind, experiment["index"]) for kind in ("engineer", "train", "evaluate", "analyse")]


async def test_a_malformed_submission_is_422_in_the_declared_shape(api_client, raw):
    auth = {"Authorization": f"Bearer {TEST_TOKEN}"}
    for body in ({}, {"program": ""}, {"program": PROGRAM, "parent": 999}, {"program": PROGRAM, "name": "-bad"},
                 {"program": PROGRAM, "fidelity": "nonsense"}, {"program": PROGRAM, "extra": 1}):
        response = await raw.post("/programs", json=body, headers=auth)
        assert response.status_code == 422, (body, response.text)
        assert all({"loc", "msg", "type"} <= set(item) for item in response.json()["detail"]), response.text
    assert (await api_client.list_experiments())["count"] == 0


async def test_a_veto_takes_the_experiment_out_of_the_pool_and_cancels_its_jobs(api_client, store):
    await scored(api_client, store, "seed", 0.5, origin="seed", is_baseline=True)
    good = await scored(api_client, store, "good", 0.6)
    best = await scored(api_client, store, "best", 0.9)
    await api_client.rebuild_candidates()
    assert best["index"] in [e["index"] for e in await api_client.candidates()]
    queued = await api_client.create_job(kind="train", experiment=best["index"])
    other = await api_client.create_job(kind="train", experiment=good["index"])

    vetoed = await api_client.veto(best["index"], "leaks the future through the conv padding", actor="carol")
    assert vetoed["status"] == "vetoed"
    assert vetoed["veto"]["reason"] == "leaks the future through the conv padding" and vetoed["veto"]["by"] == "carol"
    datetime.fromisoformat(vetoed["veto"]["at"])
    assert best["index"] not in [e["index"] for e in await api_client.candidates()]
    for seed in range(30):
        sample = await api_client.sample(seed=seed)
        assert best["index"] not in [sample["parent"]["index"], *[r["index"] for r in sample["references"]]]
    cancelled = await api_client.get_job(queued["id"])
    assert cancelled["status"] == "failed" and "vetoed" in cancelled["error"] and "conv padding" in cancelled["error"]
    assert (await api_client.get_job(other["id"]))["status"] == "queued"
    # A stage finishing later records its results but does not bring the experiment back.
    await api_client.update_experiment(best["index"], status="analysed")
    await api_client.rebuild_candidates()
    assert (await api_client.get_experiment(best["index"]))["status"] == "vetoed"
    assert best["index"] not in [e["index"] for e in await api_client.candidates()]
    assert (await api_client.list_experiments(status="vetoed"))["count"] == 1
    # Vetoing again changes nothing; an unknown experiment is a 404, a baseline a 409.
    assert (await api_client.veto(best["index"], "again"))["veto"]["reason"].startswith("leaks")
    for index, code in ((999, 404), (1, 409)):
        with pytest.raises(ApiError) as err:
            await api_client.veto(index, "no")
        assert err.value.status == code


async def test_jobs_of_a_vetoed_experiment_are_never_leased(api_client):
    experiment = await api_client.submit_program(program=PROGRAM)
    running = await api_client.lease_job(["engineer"], "w")
    await api_client.veto(experiment["index"], "not worth the compute")
    # The running job may finish; its follow-up is cancelled, and so is any job queued for it later.
    await api_client.complete_job(running["id"], "w", {}, [{"kind": "train", "experiment": experiment["index"]}])
    late = await api_client.create_job(kind="train", experiment=experiment["index"])
    assert await api_client.lease_job(["train"], "w") is None
    jobs = (await api_client.list_jobs(experiment=experiment["index"], kind="train"))["data"]
    assert len(jobs) == 2 and all(j["status"] == "failed" and "vetoed" in j["error"] for j in jobs)
    assert late["id"] in [j["id"] for j in jobs]


async def test_pause_leases_nothing_until_resumed(api_client, raw):
    held = await api_client.create_job(kind="train", timeout=30)
    waiting = await api_client.create_job(kind="train")
    assert (await api_client.lease_job(["train"], "w1"))["id"] == held["id"]
    assert await api_client.control() == {"paused": False, "since": None, "by": None, "reason": None}

    state = await api_client.pause(actor="dave", reason="quota")
    assert state["paused"] is True and state["by"] == "dave" and state["reason"] == "quota"
    datetime.fromisoformat(state["since"])
    assert await api_client.control() == state
    response = await raw.post("/jobs/lease", json={"kinds": ["train"], "worker": "w2"},
                              headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert response.status_code == 204 and response.headers["x-run-paused"] == "true"
    assert await api_client.lease_job(["train"], "w2") is None and api_client.run_paused
    # The job leased before the pause keeps its lease.
    await api_client.heartbeat(held["id"], "w1")
    assert (await api_client.complete_job(held["id"], "w1", {"ok": 1}))["status"] == "succeeded"
    assert (await api_client.get_job(waiting["id"]))["status"] == "queued"

    state = await api_client.resume()
    assert state["paused"] is False and state["by"] == "api"
    assert (await api_client.lease_job(["train"], "w2"))["id"] == waiting["id"] and not api_client.run_paused


async def test_a_paused_worker_says_so_once_and_goes_on_after_resume(api_client, caplog):
    await api_client.create_job(kind="train")
    await api_client.pause()
    handled = []

    async def handle(job, client):
        handled.append(job["id"])
        return {}

    async def resume_later():
        await asyncio.sleep(0.5)
        await api_client.resume()

    with caplog.at_level(logging.INFO, logger="worker"):
        resumer = asyncio.create_task(resume_later())
        # An idle timeout shorter than the pause: a paused run is waited out, not taken for an empty queue.
        await serve(api_client, ["train"], handle, max_jobs=1, idle_timeout_s=0.1, poll_interval_s=0.05)
        await resumer
    assert len(handled) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the run is paused" in m for m in messages) == 1, messages
    assert sum("the run is resumed" in m for m in messages) == 1, messages


async def test_every_action_is_recorded_with_who_and_when(api_client):
    experiment = await api_client.submit_program(program=PROGRAM, actor="erin")
    await api_client.veto(experiment["index"], "duplicate of #1")
    await api_client.pause(actor="frank", reason="maintenance")
    await api_client.pause(actor="frank")  # already paused: nothing happens, nothing is recorded
    await api_client.resume(actor="frank")
    actions = await api_client.actions()
    assert [(a["action"], a["target"], a["by"]) for a in actions] == [
        ("resume", None, "frank"), ("pause", None, "frank"), ("veto", experiment["index"], "api"),
        ("submit", experiment["index"], "erin")]
    assert actions[2]["detail"]["reason"] == "duplicate of #1" and actions[1]["detail"]["reason"] == "maintenance"
    times = [datetime.fromisoformat(a["at"]) for a in actions]
    assert times == sorted(times, reverse=True) and all(t.tzinfo is not None for t in times)


async def test_steering_writes_need_the_token_and_reads_do_not(api_client, raw):
    experiment = await api_client.submit_program(program=PROGRAM)
    for path, body in (("/programs", {"program": PROGRAM}), (f"/experiments/{experiment['index']}/veto",
                       {"reason": "r"}), ("/control/pause", {}), ("/control/resume", {})):
        assert (await raw.post(path, json=body)).status_code == 401, path
        wrong = await raw.post(path, json=body, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401, path
    assert (await api_client.control())["paused"] is False
    assert (await api_client.get_experiment(experiment["index"]))["status"] == "proposed"
    assert [a["action"] for a in await api_client.actions()] == ["submit"]
    for path in ("/control", "/actions"):
        assert (await raw.get(path)).status_code == 200, path
    # No body at all is an empty one.
    response = await raw.post("/control/pause", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert response.status_code == 200 and response.json()["by"] == "api"


async def test_pipeline_submits_hand_written_programs_as_human_candidates(api_client, tmp_path):
    from agent.pipeline import Follower, RunState, submit_programs

    state = RunState(tmp_path / "pipeline.json", ["smoke"])
    program = '"""A gated delta rule with a short convolution on the keys."""\n' + PROGRAM
    await submit_programs(api_client, state, Follower(api_client, 0.0), [("my_layer", program), ("my_layer", program)])
    found = (await api_client.list_experiments())["data"]
    assert [e["origin"] for e in found] == ["human", "human"]
    assert found[0]["name"] == "my_layer" and found[1]["name"].startswith("human-")
    assert found[0]["motivation"] == "A gated delta rule with a short convolution on the keys."
    assert [kind for kind, _ in state.followups] == ["program", "program"]
    assert [(await api_client.actions())[0]["by"]] == ["pipeline"]


def test_pipeline_names_a_missing_program_file_in_one_line():
    done = subprocess.run([sys.executable, "-m", "agent.pipeline", "--program", "does/not/exist.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines() == ["pipeline: --program does/not/exist.py: no such file"], done.stderr
