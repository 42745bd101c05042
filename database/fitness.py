"""Fitness of an experiment relative to the baseline trained and evaluated on the same harness.

Each part lies in [0, 1]: a sigmoid of the relative validation-loss improvement, a sigmoid of the
relative benchmark improvement, and the LLM judge's score. A relative improvement is clipped to
+-`clip` (10% by default) and scaled by it, so that +-10% reaches the ends of a sigmoid of slope
`slope` (6 by default): no single lucky run can dominate the pool. The parts are combined with
weights; a part that is missing (no judge offline) gets weight 0.
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


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    experiment: dict, baseline: dict, judge_score: float | None, settings: FitnessSettings
) -> dict[str, float | None]:
    """The parts of the fitness, each in [0, 1] or None where the experiment lacks the result."""
    loss = (experiment.get("train") or {}).get("val_loss")
    base_loss = (baseline.get("train") or {}).get("val_loss")
    loss_part = None
    if _finite(loss) and _finite(base_loss) and base_loss > 0:
        loss_part = squash((base_loss - loss) / base_loss, settings)

    bench, base_bench = benchmark_score(experiment.get("eval")), benchmark_score(baseline.get("eval"))
    bench_part = None
    if bench is not None and base_bench is not None and base_bench > 0:
        bench_part = squash((bench - base_bench) / base_bench, settings)

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
