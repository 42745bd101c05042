"""Results too good to believe are held out of the pool until fresh seeds reproduce them.

    reason = suspicion(experiment, baseline, calibration, margin=0.1)   # None, or why it is suspect

A candidate whose validation loss beats the baseline's by more than `margin` (relative), or beats the
best reference layer measured at that rung (agent.calibrate) beyond its noise, is quarantined: it
stays out of the pool while it is trained again with fresh seeds, in a fresh sandbox, and re-checked
for leaks on the new weights. After that re-run it is scored on the new numbers, and the record
keeps the first result and the reason.
"""

from __future__ import annotations

# Seeds of a quarantine re-run start here, apart from the seeds of ordinary runs and re-evaluations.
RERUN_SEED = 7_000


def best_reference(calibration: dict | None) -> tuple[str, float, float] | None:
    """(name, mean, standard error) of the lowest validation loss among a calibration's reference layers."""
    best = None
    for name, row in ((calibration or {}).get("programs") or {}).items():
        stats = ((row or {}).get("tasks") or {}).get("val_loss") or {}
        if row.get("status") == "ok" and stats.get("mean") is not None:
            if best is None or stats["mean"] < best[1]:
                best = (name, float(stats["mean"]), float(stats.get("se") or 0.0))
    return best


def suspicion(experiment: dict, baseline: dict, calibration: dict | None, *, margin: float,
              noise_se: float = 3.0) -> str | None:
    """Why the experiment's loss is too good to enter the pool unchecked, or None."""
    if experiment["index"] == baseline["index"] or experiment.get("is_baseline"):
        return None
    train = experiment.get("train") or {}
    loss, base = train.get("val_loss"), (baseline.get("train") or {}).get("val_loss")
    if loss is None or base is None:
        return None
    if loss < base * (1 - margin):
        return (f"validation loss {loss:.4f} beats the baseline's {base:.4f} by {(base - loss) / base:.1%}, "
                f"more than the {margin:.0%} margin")
    best = best_reference(calibration)
    if best is not None:
        name, mean, se = best
        spread = noise_se * max(se, float((train.get("val_loss_stats") or {}).get("se") or 0.0), 1e-3 * mean)
        if loss < mean - spread:
            return (f"validation loss {loss:.4f} beats the best reference layer at this rung ({name}, "
                    f"{mean:.4f} ± {se:.4f}) by more than {noise_se:g} standard errors")
    return None


def rerun_job(experiment: dict, payload: dict, replicates: int) -> dict:
    """The train job that re-runs a quarantined experiment with fresh seeds (then evaluate, analyse follow)."""
    seeds = list(range(RERUN_SEED, RERUN_SEED + max(1, replicates)))
    return {"kind": "train", "experiment": experiment["index"],
            "payload": {**payload, "seeds": seeds, "reevaluation": True, "quarantine_rerun": True}}
