import math
import random

import pytest
from scipy.stats import spearmanr

from database.stats import mean_se, ranks, spearman


def test_mean_and_standard_error_over_seeds():
    stats = mean_se([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["n"] == 3
    assert stats["se"] == pytest.approx(1.0 / math.sqrt(3))
    assert mean_se([5.0])["se"] == 0.0
    assert mean_se([None, float("nan")]) is None
    assert mean_se([1.0, None, 3.0])["per_seed"] == [1.0, None, 3.0]


def test_ranks_share_ties():
    assert ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]


def test_spearman_matches_scipy_with_and_without_ties():
    rng = random.Random(0)
    for _ in range(20):
        a = [rng.choice([1, 2, 3, 4, 5]) for _ in range(8)]
        b = [rng.random() for _ in range(8)]
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
