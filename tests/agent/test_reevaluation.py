"""An elite is trained again with fresh seeds before it parents more children; the new scores replace the old."""

from __future__ import annotations

from pathlib import Path

from agent.pipeline import RunState, reevaluate_elites
from trainer.layers import seed_program
from trainer.worker import handle_train


async def elite_with_children(api_client, store, children: int) -> dict:
    elite = await api_client.create_experiment(name="elite", program=seed_program(), fidelity="synthetic")
    await store.update_experiment(index=elite["index"], fields={
        "status": "analysed", "fitness": 0.8, "train": {"val_loss": 1.0, "seeds": [0, 1, 2]},
        "eval": {"average": 0.9, "recall": 0.8}})
    for n in range(children):
        await api_client.create_experiment(name=f"child-{n}", program=seed_program(), parent=elite["index"],
                                           fidelity="synthetic")
    await api_client.rebuild_candidates()
    return elite


async def test_an_elite_with_enough_children_is_queued_once_for_fresh_seeds(api_client, store, tmp_path):
    elite = await elite_with_children(api_client, store, children=2)
    state = RunState(Path(tmp_path / "pipeline.json"), ["synthetic"])
    payload = {"fidelity": "synthetic", "seed": 0}
    await reevaluate_elites(api_client, state, payload, after=3)
    assert (await api_client.list_jobs(kind="train"))["count"] == 0  # two children: not yet

    await api_client.create_experiment(name="child-2", program=seed_program(), parent=elite["index"],
                                       fidelity="synthetic")
    await reevaluate_elites(api_client, state, payload, after=3)
    await reevaluate_elites(api_client, state, payload, after=3)
    [job] = (await api_client.list_jobs(kind="train"))["data"]
    assert job["experiment"] == elite["index"] and job["payload"]["reevaluation"] is True
    assert job["payload"]["seeds"] == [1000, 1001, 1002]
    assert state.reevaluated == [elite["index"]] and state.followups == [["reevaluate", job["id"]]]


async def test_fresh_seeds_replace_the_scores_and_the_old_ones_stay_in_the_history(api_client, store, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    elite = await elite_with_children(api_client, store, children=0)
    overrides = {"steps": 4, "warmup_steps": 2, "eval_batches": 1, "replicates": 2}
    job = await api_client.create_job(kind="train", experiment=elite["index"], payload={
        "fidelity": "synthetic", "overrides": overrides, "seeds": [1000, 1001], "reevaluation": True})
    await handle_train(job, api_client)

    stored = await api_client.get_experiment(elite["index"])
    assert stored["train"]["seeds"] == [1000, 1001] and stored["train"]["val_loss"] != 1.0
    [old] = stored["history"]
    assert old["train"]["seeds"] == [0, 1, 2] and old["fitness"] == 0.8 and old["eval"] == {"average": 0.9, "recall": 0.8}
