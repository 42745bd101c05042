"""A result too good to believe is held out of the pool and re-run with fresh seeds before it is scored."""

from __future__ import annotations

from agent.analyst import handle_analyse
from agent.quarantine import RERUN_SEED, best_reference, suspicion
from trainer.layers import seed_program

BASELINE = {"index": 1, "train": {"val_loss": 2.0}}
CALIBRATION = {"programs": {
    "softmax_attention": {"status": "ok", "tasks": {"val_loss": {"mean": 1.90, "se": 0.01}}},
    "deltanet": {"status": "ok", "tasks": {"val_loss": {"mean": 2.00, "se": 0.01}}},
    "broken": {"status": "failed"}}}


def experiment(loss: float, se: float = 0.005) -> dict:
    return {"index": 2, "train": {"val_loss": loss, "val_loss_stats": {"mean": loss, "se": se}}}


def test_the_best_reference_layer_is_the_lowest_loss_of_the_calibration():
    assert best_reference(CALIBRATION) == ("softmax_attention", 1.90, 0.01)
    assert best_reference(None) is None


def test_suspicion_needs_a_margin_over_the_baseline_or_a_win_over_every_reference_layer():
    assert suspicion(experiment(1.95), BASELINE, CALIBRATION, margin=0.1) is None  # better, but plausibly so
    assert suspicion(experiment(1.89), BASELINE, CALIBRATION, margin=0.1) is None  # within 3 SE of softmax
    assert "best reference layer" in suspicion(experiment(1.80), BASELINE, CALIBRATION, margin=0.1)
    assert "margin" in suspicion(experiment(1.70), BASELINE, None, margin=0.1)
    assert suspicion(experiment(1.70), BASELINE, None, margin=0.2) is None
    assert suspicion({**experiment(0.1), "index": 1}, BASELINE, CALIBRATION, margin=0.1) is None  # the baseline


async def test_a_quarantined_experiment_is_rerun_then_scored_with_its_first_result_on_record(api_client, store):
    seed = await api_client.create_experiment(name="seed", program=seed_program(), origin="seed", is_baseline=True,
                                              fidelity="smoke")
    results = {"eval": {"average": 0.5, "recall": 0.5, "tasks": {}}, "status": "evaluated"}
    await store.update_experiment(index=seed["index"], fields={"train": {"val_loss": 5.0}, **results})
    faker = await api_client.create_experiment(name="too-good", program=seed_program(), fidelity="smoke")
    await store.update_experiment(index=faker["index"], fields={"train": {"val_loss": 0.05, "seeds": [0, 1, 2]},
                                                                **results})
    job = await api_client.create_job(kind="analyse", experiment=faker["index"], payload={"fidelity": "smoke"})

    outcome = await handle_analyse(job, api_client, llm=None, judge=None)
    stored = await api_client.get_experiment(faker["index"])
    assert stored["status"] == "quarantined" and stored.get("fitness") is None
    assert "margin" in stored["quarantine"]["reason"] and stored["quarantine"]["first"]["val_loss"] == 0.05
    [rerun] = outcome.next_jobs
    assert rerun["kind"] == "train" and rerun["payload"]["seeds"] == [RERUN_SEED, RERUN_SEED + 1, RERUN_SEED + 2]
    assert faker["index"] not in [c["index"] for c in await api_client.candidates()]

    # The re-run's fresh seeds came back (here: as good as before); now it is scored, with the record kept.
    await store.update_experiment(index=faker["index"], fields={"train": {"val_loss": 0.06, "seeds": [7000]}})
    await handle_analyse(job, api_client, llm=None, judge=None)
    stored = await api_client.get_experiment(faker["index"])
    assert stored["status"] == "analysed" and stored["fitness"] is not None
    assert stored["quarantine"]["cleared_val_loss"] == 0.06 and stored["quarantine"]["first"]["val_loss"] == 0.05
