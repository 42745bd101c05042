"""The evaluate worker against a real in-process API: failures the candidate caused, and a full pass."""

from __future__ import annotations

import pytest

from database.worker import run_one
from evaluator import worker


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


async def test_evaluates_stores_scores_and_costs(api_client, checkpoint_dir, bench_cache, monkeypatch):
    monkeypatch.setattr(worker, "default_cache_dir", lambda: bench_cache)
    experiment = await api_client.create_experiment(name="seed", program="class DeltaNet: pass")
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 3.0, "checkpoint": str(checkpoint_dir)})
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
