import math

import pytest

from database.fitness import FitnessSettings, benchmark_score, combine, fitness_parts, squash

S = FitnessSettings()


def exp(val_loss, average, recall=None):
    return {"train": {"val_loss": val_loss}, "eval": {"average": average, "recall": recall}}


def test_parity_gives_one_half_everywhere():
    base = exp(3.0, 0.4, 0.2)
    parts = fitness_parts(base, base, 0.5, S)
    assert parts == {"loss": pytest.approx(0.5), "benchmark": pytest.approx(0.5), "judge": 0.5}
    assert combine(parts, S) == pytest.approx(0.5)


def test_improvements_raise_fitness_and_clip_at_ten_percent():
    base = exp(3.0, 0.4)
    better = exp(2.7, 0.44)  # exactly 10% better on both
    much_better = exp(1.0, 0.9)
    parts = fitness_parts(better, base, None, S)
    assert parts["loss"] == pytest.approx(1 / (1 + math.exp(-6)))
    assert fitness_parts(much_better, base, None, S)["loss"] == pytest.approx(parts["loss"])
    worse = fitness_parts(exp(3.3, 0.36), base, None, S)
    assert worse["loss"] == pytest.approx(1 - parts["loss"])
    assert combine(worse, S) < 0.5 < combine(parts, S)


def test_missing_judge_gets_zero_weight_and_weights_are_settings():
    base = exp(3.0, 0.4)
    parts = fitness_parts(exp(2.85, 0.4), base, None, S)
    assert combine(parts, S) == pytest.approx((parts["loss"] + 0.5) / 2)
    loss_only = FitnessSettings(weight_benchmark=0, weight_judge=0)
    assert combine(parts, loss_only) == pytest.approx(parts["loss"])
    steeper = FitnessSettings(slope=12, clip=0.2)
    assert squash(0.1, steeper) == pytest.approx(1 / (1 + math.exp(-6)))


def test_nan_or_missing_results_give_no_fitness():
    base = exp(3.0, 0.4)
    assert combine(fitness_parts(exp(float("nan"), 0.4), base, 0.9, S), S) is None
    assert combine(fitness_parts({"train": {"val_loss": 2.0}}, base, 0.9, S), S) is None
    assert benchmark_score({"average": 0.3, "recall": float("inf")}) is None
    assert benchmark_score({"average": 0.3, "recall": 0.5}) == pytest.approx(0.4)


def test_judge_score_out_of_range_is_refused():
    with pytest.raises(ValueError, match="judge_score"):
        fitness_parts(exp(3.0, 0.4), exp(3.0, 0.4), 1.5, S)
