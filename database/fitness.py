"""Fitness of an experiment relative to the baseline trained and evaluated on the same harness.

Each part lies in [0, 1]: a sigmoid of the relative validation-loss improvement, a sigmoid of the
relative benchmark improvement, and the LLM judge's score. A relative improvement is clipped to
+-`clip` (10% by default) and scaled by it, so that +-10% reaches the ends of a sigmoid of slope
`slope` (6 by default): no single lucky run can dominate the pool. The parts are combined with
weights; a part that is missing (no judge offline) gets weight 0.

Noise: every score at a rung is a mean over training seeds, with a standard error (SE), and so is the
baseline's, over the same seeds. A difference counts only by how far it stands beyond its noise: with
d the difference and s = sqrt(SE_experiment^2 + SE_baseline^2), the part sees sign(d) * max(0, |d| - k*s),
k = `noise_se` (2 by default, the margin a claim needs; 0 counts raw differences). So a candidate
within k SE of the baseline scores exactly 0.5, and the seed scored against itself sits at parity.
Each side's SE is floored at the rung's typical seed spread (`seed_noise`, from its calibration):
three seeds alone often underestimate their own spread. An experiment *beats the
baseline* when a weighted part improves by more than `beats_se` (2) SE and none is worse by that much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FitnessSettings:
    weight_loss: float = 1.0
    weight_benchmark: float = 1.0
    weight_judge: float = 1.0
    clip: float = 0.10
    slope: float = 6.0
    noise_se: float = 2.0
    beats_se: float = 2.0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stats(record: dict | None, key: str, value: float | None) -> dict | None:
    """A measurement as {"mean", "se"}: its replicated statistics, or the single value with no known noise."""
    stats = (record or {}).get(f"{key}_stats")
    if stats and _finite(stats.get("mean")) and _finite(stats.get("se")):
        return stats
    return {"mean": value, "se": 0.0} if _finite(value) else None


def seed_noise(calibration: dict | None) -> dict[str, float]:
    """The rung's typical seed-to-seed standard deviation of each part: the median over its calibration's programs.

    Three seeds estimate their own spread poorly (two degrees of freedom), so the rung's typical spread is
    the floor under an experiment's own standard error. The median keeps one program whose seeds split
    (a phase transition reached or not) from setting the floor for all.
    """
    spreads: dict[str, list[float]] = {"loss": [], "benchmark": []}
    for program in ((calibration or {}).get("programs") or {}).values():
        runs = program.get("per_seed") or []
        for part, key in (("loss", "val_loss"), ("benchmark", "benchmark")):
            values = [r[key] for r in runs if _finite(r.get(key))]
            if len(values) > 1:
                mean = sum(values) / len(values)
                spreads[part].append(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))
    return {part: sorted(found)[len(found) // 2] for part, found in spreads.items() if found}


def _floored(stats: dict | None, sd: float | None) -> dict | None:
    if stats is None or not sd:
        return stats
    return {**stats, "se": max(stats["se"], sd / math.sqrt(max(1, stats.get("n") or 1)))}


def evidence(experiment: dict, baseline: dict, noise: dict[str, float] | None = None) -> dict[str, dict | None]:
    """Per part: the improvement over the baseline (positive is better), its standard error and z = d / SE.

    `noise` (from `seed_noise`) floors each side's standard error at the rung's pooled seed spread.
    """
    noise = noise or {}
    train, base_train = experiment.get("train"), baseline.get("train")
    loss = _floored(_stats(train, "val_loss", (train or {}).get("val_loss")), noise.get("loss"))
    base_loss = _floored(_stats(base_train, "val_loss", (base_train or {}).get("val_loss")), noise.get("loss"))
    bench = _floored(_stats(experiment.get("eval"), "benchmark", benchmark_score(experiment.get("eval"))),
                     noise.get("benchmark"))
    base_bench = _floored(_stats(baseline.get("eval"), "benchmark", benchmark_score(baseline.get("eval"))),
                          noise.get("benchmark"))
    found = {}
    for name, better, worse, reference in (("loss", base_loss, loss, base_loss), ("benchmark", bench, base_bench,
                                                                                   base_bench)):
        if better is None or worse is None:
            found[name] = None
            continue
        difference = better["mean"] - worse["mean"]
        se = math.hypot(better["se"], worse["se"])
        found[name] = {"difference": difference, "se": se, "z": difference / se if se > 0 else None,
                       "reference": reference["mean"]}
    return found


def counted(part: dict, settings: FitnessSettings) -> float:
    """The relative improvement that counts: the difference shrunk towards 0 by `noise_se` standard errors."""
    magnitude = max(0.0, abs(part["difference"]) - settings.noise_se * part["se"])
    return math.copysign(magnitude, part["difference"]) / abs(part["reference"])


def beats_baseline(found: dict[str, dict | None], settings: FitnessSettings) -> bool:
    """True when a weighted part improves by more than `beats_se` SE and no weighted part is that much worse."""
    weights = {"loss": settings.weight_loss, "benchmark": settings.weight_benchmark}
    margins = [(part["difference"], settings.beats_se * part["se"]) for name, part in found.items()
               if part is not None and weights.get(name, 0) > 0]
    return any(d > m and d > 0 for d, m in margins) and not any(d < -m and d < 0 for d, m in margins)


def squash(relative: float, settings: FitnessSettings) -> float:
    """Map a relative improvement to (0, 1): 0.5 at parity, saturating at +-clip."""
    scaled = max(-1.0, min(1.0, relative / settings.clip))
    return 1.0 / (1.0 + math.exp(-settings.slope * scaled))


def benchmark_score(evaluation: dict | None) -> float | None:
    """One benchmark number: the mean of the language-task average and the recall-task mean."""
    if not evaluation:
        return None
    parts = [evaluation.get(key) for key in ("average", "recall")]
    parts = [part for part in parts if part is not None]
    if not parts or not all(_finite(part) for part in parts):
        return None
    return sum(parts) / len(parts)


def fitness_parts(
    experiment: dict, baseline: dict, judge_score: float | None, settings: FitnessSettings,
    noise: dict[str, float] | None = None,
) -> dict[str, float | None]:
    """The parts of the fitness, each in [0, 1] or None where the experiment lacks the result."""
    found = evidence(experiment, baseline, noise)
    loss_part = bench_part = None
    if found["loss"] is not None and found["loss"]["reference"] > 0:
        loss_part = squash(counted(found["loss"], settings), settings)
    if found["benchmark"] is not None and found["benchmark"]["reference"] > 0:
        bench_part = squash(counted(found["benchmark"], settings), settings)

    judge_part = None
    if _finite(judge_score):
        if not 0.0 <= judge_score <= 1.0:
            raise ValueError(f"judge_score must lie in [0, 1], got {judge_score}")
        judge_part = float(judge_score)
    return {"loss": loss_part, "benchmark": bench_part, "judge": judge_part}


def combine(parts: dict[str, float | None], settings: FitnessSettings) -> float | None:
    """Weighted mean of the available parts; None when loss or benchmark results are missing."""
    if parts["loss"] is None or parts["benchmark"] is None:
        return None
    weights = {"loss": settings.weight_loss, "benchmark": settings.weight_benchmark,
               "judge": settings.weight_judge if parts["judge"] is not None else 0.0}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"fitness weights must have a positive sum, got {weights}")
    return sum(weights[name] * (parts[name] or 0.0) for name in weights) / total
