"""The candidate pool: which experiments may be parents, and how one is picked. Pure functions."""

from __future__ import annotations

import math
import random


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eligible(experiment: dict) -> bool:
    """Analysed, with a finite fitness, a finite validation loss and finite benchmark results."""
    if experiment.get("status") != "analysed" or not _finite(experiment.get("fitness")):
        return False
    if not _finite((experiment.get("train") or {}).get("val_loss")):
        return False
    evaluation = experiment.get("eval") or {}
    scores = [evaluation.get(key) for key in ("average", "recall") if evaluation.get(key) is not None]
    return bool(scores) and all(_finite(score) for score in scores)


RANKINGS = ("quality", "weighted", "pareto")


def speed(experiment: dict) -> float:
    """Training speed relative to the seed as the evaluator measured it (1.0 where it was not measured)."""
    value = (experiment.get("cost") or {}).get("speed_vs_seed")
    return float(value) if _finite(value) and value > 0 else 1.0


def pareto_fronts(experiments: list[dict]) -> dict[int, int]:
    """Front number per index (0: not dominated) over (fitness, speed), both higher-is-better."""
    points = {e["index"]: (e["fitness"], speed(e)) for e in experiments}
    fronts, left, front = {}, set(points), 0
    while left:
        current = {i for i in left if not any(points[j][0] >= points[i][0] and points[j][1] >= points[i][1]
                                               and points[j] != points[i] for j in left)}
        fronts.update(dict.fromkeys(current, front))
        left -= current
        front += 1
    return fronts


def rank(experiments: list[dict], k: int = 50, by: str = "quality", cost_weight: float = 0.1) -> list[dict]:
    """The top-k eligible experiments, ties broken by the older index.

    `quality` (the default) ranks by fitness alone; `weighted` by fitness + cost_weight * log2(speed
    relative to the seed), so twice as fast is worth cost_weight of fitness; `pareto` by the Pareto
    front of fitness and speed, then fitness within a front.
    """
    if by not in RANKINGS:
        raise ValueError(f"unknown ranking {by!r} (choose from {', '.join(RANKINGS)})")
    pool = [e for e in experiments if eligible(e)]
    fronts = pareto_fronts(pool) if by == "pareto" else {}

    def key(e: dict) -> tuple:
        if by == "weighted":
            return -(e["fitness"] + cost_weight * math.log2(speed(e))), e["index"]
        return fronts.get(e["index"], 0), -e["fitness"], e["index"]

    return sorted(pool, key=key)[:k]


def sample_by_rank(
    ranked: list[dict], rng: random.Random, parent_top: int = 10, reference_count: int = 4
) -> tuple[dict, list[dict]]:
    """A parent uniformly from ranks 1..parent_top and references from the ranks after it.

    With a small pool, references are drawn from whatever else is there.
    """
    if not ranked:
        raise ValueError("the candidate pool is empty: train and analyse a baseline first")
    parent = rng.choice(ranked[:parent_top])
    rest = [e for e in ranked[parent_top:]] or [e for e in ranked if e is not parent]
    references = rng.sample(rest, min(reference_count, len(rest)))
    return parent, references


def uct_scores(ranked: list[dict], children: dict[int, list[float]], c: float = 1.0) -> dict[int, float]:
    """Upper-confidence score per candidate: mean fitness of it and its children plus exploration.

    `children` maps an index to the fitness values of its scored children. N is the number of
    scored experiments in the pool and its children; a node with few children gets a bonus.
    """
    total = sum(1 + len(children.get(e["index"], [])) for e in ranked)
    scores = {}
    for e in ranked:
        values = [e["fitness"], *children.get(e["index"], [])]
        mean = sum(values) / len(values)
        scores[e["index"]] = mean + c * math.sqrt(math.log(max(total, 1)) / len(values))
    return scores


def sample_by_uct(
    ranked: list[dict], children: dict[int, list[float]], rng: random.Random, c: float = 1.0,
    reference_count: int = 4,
) -> tuple[dict, list[dict]]:
    """The parent with the highest UCT score (ties at random) and random references from the rest."""
    if not ranked:
        raise ValueError("the candidate pool is empty: train and analyse a baseline first")
    scores = uct_scores(ranked, children, c)
    best = max(scores.values())
    parent = rng.choice([e for e in ranked if math.isclose(scores[e["index"]], best)])
    rest = [e for e in ranked if e is not parent]
    return parent, rng.sample(rest, min(reference_count, len(rest)))
