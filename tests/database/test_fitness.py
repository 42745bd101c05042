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


def replicated(losses, scores):
    """An experiment with per-seed validation losses and benchmark scores."""
    from database.stats import mean_se

    loss, bench = mean_se(losses), mean_se(scores)
    return {"train": {"val_loss": loss["mean"], "val_loss_stats": loss},
            "eval": {"average": bench["mean"], "recall": bench["mean"], "benchmark_stats": bench}}


def test_a_difference_within_its_standard_error_counts_as_parity():
    from database.fitness import beats_baseline, evidence

    baseline = replicated([3.00, 3.02, 2.98], [0.40, 0.42, 0.38])
    noisy_twin = replicated([2.99, 3.01, 2.97], [0.41, 0.43, 0.39])  # better by less than one SE
    parts = fitness_parts(noisy_twin, baseline, None, S)
    assert parts["loss"] == pytest.approx(0.5) and parts["benchmark"] == pytest.approx(0.5)
    assert not beats_baseline(evidence(noisy_twin, baseline), S)
    # With the rule off, the same raw difference moves fitness.
    raw = FitnessSettings(noise_se=0)
    assert fitness_parts(noisy_twin, baseline, None, raw)["loss"] > 0.5


def test_a_difference_beyond_two_standard_errors_beats_the_baseline_and_counts_only_beyond_them():
    from database.fitness import beats_baseline, evidence

    baseline = replicated([3.00, 3.02, 2.98], [0.40, 0.42, 0.38])
    better = replicated([2.90, 2.92, 2.88], [0.40, 0.42, 0.38])
    found = evidence(better, baseline)
    assert found["loss"]["difference"] == pytest.approx(0.1)
    assert found["loss"]["z"] > 2 and found["benchmark"]["difference"] == pytest.approx(0)
    assert beats_baseline(found, S)
    shrunk = (0.1 - 2 * found["loss"]["se"]) / 3.0
    assert fitness_parts(better, baseline, None, S)["loss"] == pytest.approx(squash(shrunk, S))
    # Better on loss but worse by more than 2 SE on the benchmarks: no claim.
    mixed = replicated([2.90, 2.92, 2.88], [0.30, 0.31, 0.29])
    assert not beats_baseline(evidence(mixed, baseline), S)
    assert not beats_baseline(evidence(baseline, baseline), S)


def test_the_rungs_typical_seed_spread_floors_a_small_samples_own():
    from database.fitness import beats_baseline, evidence, seed_noise

    def program(*losses):
        return {"per_seed": [{"val_loss": v, "benchmark": 0.5} for v in losses]}

    # Three programs spread 0.1 over seeds; one split by a phase transition must not set the floor.
    calibration = {"programs": {"a": program(3.0, 3.1, 3.2), "b": program(2.0, 2.1, 2.2), "c": program(1.0, 3.0, 1.1),
                                "d": program(4.0, 4.1, 4.2)}}
    noise = seed_noise(calibration)
    assert noise["loss"] == pytest.approx(0.1) and noise["benchmark"] == 0.0
    # Two triples that happen to agree within themselves: their own SE is tiny, the rung's is not.
    baseline, lucky = replicated([3.00, 3.001, 3.002], [0.4] * 3), replicated([2.85, 2.851, 2.852], [0.4] * 3)
    assert beats_baseline(evidence(lucky, baseline), S)
    floored = evidence(lucky, baseline, noise)
    assert floored["loss"]["se"] == pytest.approx(0.1 * math.sqrt(2 / 3))
    assert not beats_baseline(floored, S)
