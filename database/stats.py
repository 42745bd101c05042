"""Replicated measurements: mean and standard error over seeds, and rank correlations.

A score at a rung is never one run: each is trained with n seeds, and every number is kept as
`{"mean", "se", "per_seed"}`. The standard error is the sample standard deviation over sqrt(n)
(0 with one seed: then nothing can be said about noise, and fitness treats it as exact).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_se(values: Sequence[float | None]) -> dict | None:
    """{"mean", "se", "per_seed", "n"} of the finite values; None when there is none."""
    kept = [float(v) for v in values if finite(v)]
    if not kept:
        return None
    n = len(kept)
    mean = sum(kept) / n
    variance = sum((v - mean) ** 2 for v in kept) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "se": math.sqrt(variance / n), "per_seed": [float(v) if finite(v) else None for v in values],
            "n": n}


def difference(better: dict | None, worse: dict | None) -> tuple[float, float] | None:
    """(better.mean - worse.mean, the standard error of that difference) of two independent estimates."""
    if not better or not worse:
        return None
    return better["mean"] - worse["mean"], math.hypot(better.get("se") or 0.0, worse.get("se") or 0.0)


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (the Pearson correlation of tie-averaged ranks); None if undefined."""
    if len(a) != len(b) or len(a) < 2:
        return None
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return None if var == 0 else cov / var
