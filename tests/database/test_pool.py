import random

import pytest

from database.pool import eligible, rank, sample_by_rank, sample_by_uct, uct_scores


def cand(index, fitness, status="analysed", val_loss=3.0, average=0.4, parent=None):
    return {"index": index, "fitness": fitness, "status": status, "parent": parent,
            "train": {"val_loss": val_loss}, "eval": {"average": average}}


def test_nan_missing_or_unanalysed_never_enter():
    assert eligible(cand(1, 0.6))
    assert not eligible(cand(2, float("nan")))
    assert not eligible(cand(3, None))
    assert not eligible(cand(4, 0.7, status="evaluated"))
    assert not eligible(cand(5, 0.7, val_loss=float("nan")))
    assert not eligible({**cand(6, 0.7), "eval": None})


def test_rank_orders_by_fitness_and_keeps_top_k():
    pool = [cand(i, f) for i, f in [(1, 0.5), (2, 0.9), (3, float("nan")), (4, 0.7), (5, 0.9)]]
    ranked = rank(pool, k=3)
    assert [c["index"] for c in ranked] == [2, 5, 4]


def fast(index, fitness, speed):
    return {**cand(index, fitness), "cost": {"speed_vs_seed": speed}}


def test_cost_aware_rankings_trade_quality_for_speed_only_when_asked():
    pool = [fast(1, 0.60, 0.5), fast(2, 0.58, 2.0), fast(3, 0.55, 1.0), fast(4, 0.50, 4.0), fast(5, 0.40, 0.9)]
    assert [c["index"] for c in rank(pool)] == [1, 2, 3, 4, 5]  # the default is quality alone
    # fitness + 0.1 * log2(speed): 0.50, 0.68, 0.55, 0.70, 0.385
    assert [c["index"] for c in rank(pool, by="weighted", cost_weight=0.1)] == [4, 2, 3, 1, 5]
    # Front 0: 1 (best fitness), 2, 4 (fastest); 3 is dominated by 2 only; 5 by 1, 2, 3 and 4.
    assert [c["index"] for c in rank(pool, by="pareto")] == [1, 2, 4, 3, 5]
    assert [c["index"] for c in rank([cand(1, 0.6), cand(2, 0.7)], by="weighted")] == [2, 1]  # unmeasured: speed 1
    with pytest.raises(ValueError, match="unknown ranking 'fastest'"):
        rank(pool, by="fastest")


def test_rank_sampling_draws_parent_from_top_and_references_from_rest():
    ranked = rank([cand(i, 1 - i / 100) for i in range(1, 51)])
    rng = random.Random(0)
    parents = set()
    for _ in range(300):
        parent, refs = sample_by_rank(ranked, rng, parent_top=10, reference_count=4)
        parents.add(parent["index"])
        assert parent["index"] <= 10
        assert len(refs) == 4 and all(11 <= r["index"] <= 50 for r in refs)
    assert parents == set(range(1, 11))


def test_small_pool_and_empty_pool():
    parent, refs = sample_by_rank(rank([cand(1, 0.5), cand(2, 0.4)]), random.Random(1))
    assert refs and refs[0]["index"] != parent["index"]
    with pytest.raises(ValueError, match="empty"):
        sample_by_rank([], random.Random(0))


def test_uct_prefers_unexplored_nodes_when_fitness_ties():
    ranked = rank([cand(1, 0.6), cand(2, 0.6)])
    children = {1: [0.6] * 8}
    scores = uct_scores(ranked, children, c=1.0)
    assert scores[2] > scores[1]
    parent, _ = sample_by_uct(ranked, children, random.Random(0), c=1.0)
    assert parent["index"] == 2
    # With no exploration the better mean wins.
    children = {1: [0.9] * 8}
    parent, _ = sample_by_uct(ranked, children, random.Random(0), c=0.0)
    assert parent["index"] == 1
