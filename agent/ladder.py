"""A ladder of fidelities: every candidate runs on the cheapest rung, the best go on to the next.

    python -m agent.pipeline --ladder synthetic,smoke              # the CPU default
    python -m agent.pipeline --ladder synthetic,explore,verify --promote 0.25

After the candidates of a rung are scored, the best fraction of them (`--promote`, at least
`--promote-min`) by fitness, which already counts differences only beyond their standard errors,
is copied to the next rung as a new experiment (origin `promoted`, parent and `promoted_from` the
candidate it came from) and goes through the same checks, training, evaluation and analysis there,
against that rung's own baseline. Each rung's say in a candidate's standing is its calibration's
Spearman correlation with the expected order of the reference panel (`agent.calibrate`), floored at
0: a rung that ranks the panel wrongly is a check that a candidate still trains, not a judge.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from agent.calibrate import EARNED_SPEARMAN
from trainer.fidelity import FIDELITIES

DEFAULT_LADDER = ("synthetic", "smoke")
# Calibrations measured for the project on 2 CPU cores, used where a run has none of its own.
SHIPPED_CALIBRATIONS = Path(__file__).resolve().parents[1] / "trainer" / "panel" / "calibrations"


def parse_ladder(text: str) -> list[str]:
    rungs = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in rungs if r not in FIDELITIES]
    if not rungs or unknown:
        raise ValueError(f"--ladder {text!r}: unknown rung(s) {unknown or '(none given)'}; rungs are "
                         f"{sorted(FIDELITIES)}, comma-separated, cheapest first")
    if len(set(rungs)) != len(rungs):
        raise ValueError(f"--ladder {text!r}: a rung appears twice")
    return rungs


def rung_overrides(overrides: dict, rungs: list[str]) -> dict[str, dict]:
    """Split `--set` pairs: `steps=100` holds on every rung, `smoke.steps=100` on that rung alone."""
    split: dict[str, dict] = {rung: {} for rung in rungs}
    for key, value in overrides.items():
        rung, _, field = key.rpartition(".")
        if rung and rung not in split:
            raise ValueError(f"--set {key}={value}: {rung!r} is not a rung of the ladder {rungs}")
        for target in [rung] if rung else rungs:
            split[target][field] = value
    for rung, fields in split.items():
        FIDELITIES[rung].with_overrides(fields)  # a bad field or value fails here, not in a worker
    return split


def promotion_count(candidates: int, fraction: float, minimum: int) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"--promote {fraction}: a fraction in (0, 1]")
    return min(candidates, max(minimum, math.ceil(fraction * candidates)))


def select_for_promotion(experiments: list[dict], fraction: float, minimum: int) -> list[dict]:
    """The best-scored experiments of a rung (baselines and vetoed ones excluded), best first."""
    scored = [e for e in experiments if not e.get("is_baseline") and isinstance(e.get("fitness"), (int, float))
              and e.get("status") != "vetoed"]
    scored.sort(key=lambda e: (-e["fitness"], e["index"]))
    return scored[:promotion_count(len(scored), fraction, minimum)]


def promoted_name(name: str, rung: str) -> str:
    return f"{name[:120 - len(rung)]}.{rung}"


async def promote(client, experiment: dict, rung: str) -> dict:
    """The candidate's copy at the next rung (or the copy made earlier, when resuming)."""
    name = promoted_name(experiment["name"], rung)
    found = (await client.list_experiments(fidelity=rung, limit=500))["data"]
    for existing in found:
        if existing["name"] == name:
            return existing
    return await client.create_experiment(
        name=name, program=experiment["program"], motivation=experiment.get("motivation") or "",
        parent=experiment["index"], fidelity=rung, origin="promoted", promoted_from=experiment["index"])


def rung_weight(calibration: dict | None) -> float:
    """A rung's say: its Spearman correlation with the expected order, floored at 0; 1 when uncalibrated."""
    if not calibration or calibration.get("spearman_expected") is None:
        return 1.0
    return max(0.0, float(calibration["spearman_expected"]))


def calibration_warnings(rungs: list[str], calibrations: dict) -> list[str]:
    lines = []
    for rung in rungs:
        record = calibrations.get(rung)
        if record is None:
            lines.append(f"rung {rung!r} is not calibrated: its ranking of known layers is unmeasured "
                         f"(python -m agent.calibrate --fidelity {rung})")
        elif (record.get("spearman_expected") or 0) < EARNED_SPEARMAN:
            rho = record.get("spearman_expected")
            lines.append(f"rung {rung!r} has not earned its place: Spearman {'-' if rho is None else f'{rho:.2f}'} "
                         f"with the expected order (< {EARNED_SPEARMAN}); its fitness counts with weight "
                         f"{rung_weight(record):.2f}")
    return lines


def local_calibrations(folder: Path) -> list[dict]:
    """Calibration files that `agent.calibrate` wrote into RUN_DIR/calibration/."""
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("fidelity") in FIDELITIES and "programs" in record:
            records.append(record)
    return records


def ladder_fitness(by_rung: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """A candidate's standing over the rungs it reached: 0.5 plus the weighted mean of its fitness margins."""
    terms = [(weights.get(rung, 1.0), f) for rung, f in by_rung.items() if isinstance(f, (int, float))]
    total = sum(w for w, _ in terms)
    if not terms or total <= 0:
        return None
    return 0.5 + sum(w * (f - 0.5) for w, f in terms) / total
