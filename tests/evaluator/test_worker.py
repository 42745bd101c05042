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


async def test_synthetic_checkpoints_of_every_seed_are_scored_and_merged(api_client, tmp_path):
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
    await api_client.update_experiment(experiment["index"], status="trained",
                                       train={"val_loss": 5.0, "checkpoint": checkpoints[0], "checkpoints": checkpoints})
    job = await leased_job(api_client, experiment, {"fidelity": "synthetic"})
    assert await run_one(api_client, job, worker.handle_evaluate, "evaluator-test") == "succeeded"

    scores = (await api_client.get_experiment(experiment["index"]))["eval"]
    assert scores["seeds"] == 2 and scores["tier"] == "synthetic"
    mqar = scores["tasks"]["mqar_8"]
    assert mqar["stats"]["n"] == 2 and mqar["value"] == pytest.approx(mqar["stats"]["mean"])
    assert scores["average_stats"]["n"] == 2 and scores["benchmark_stats"]["n"] == 2
    assert 0.0 <= scores["average"] <= 1.0 and scores["perplexity"] is None
