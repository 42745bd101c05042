import pytest

from agent.calibrate import rank_statistics
from agent.ladder import (
    calibration_warnings,
    ladder_fitness,
    parse_ladder,
    promotion_count,
    rung_overrides,
    rung_weight,
    select_for_promotion,
)
from database.stats import mean_se


def test_ladders_name_known_rungs_once():
    assert parse_ladder("synthetic, smoke") == ["synthetic", "smoke"]
    for bad in ("synthetic,nonsense", "", "smoke,smoke"):
        with pytest.raises(ValueError):
            parse_ladder(bad)


def test_overrides_hold_on_every_rung_or_on_the_one_named():
    split = rung_overrides({"steps": "50", "smoke.eval_batches": "2"}, ["synthetic", "smoke"])
    assert split == {"synthetic": {"steps": "50"}, "smoke": {"steps": "50", "eval_batches": "2"}}
    with pytest.raises(ValueError, match="not a rung"):
        rung_overrides({"verify.steps": "5"}, ["synthetic", "smoke"])
    with pytest.raises(ValueError, match="steps"):
        rung_overrides({"steps": "-x"}, ["smoke"])


def test_promotion_takes_the_best_fraction_and_never_the_baseline():
    experiments = [{"index": 1, "is_baseline": True, "fitness": 0.9}, {"index": 2, "fitness": 0.4},
                   {"index": 3, "fitness": 0.7}, {"index": 4, "fitness": None}, {"index": 5, "fitness": 0.6},
                   {"index": 6, "fitness": 0.5}, {"index": 7, "fitness": 0.55}]
    assert [e["index"] for e in select_for_promotion(experiments, 0.25, 1)] == [3, 5]
    assert [e["index"] for e in select_for_promotion(experiments, 0.1, 1)] == [3]
    assert select_for_promotion(experiments, 0.1, 0) == [experiments[2]]  # ceil(0.5) = 1
    assert promotion_count(0, 0.25, 1) == 0
    with pytest.raises(ValueError):
        promotion_count(4, 0, 1)


def test_a_rung_counts_as_much_as_its_calibration_earns():
    assert rung_weight(None) == 1.0
    assert rung_weight({"spearman_expected": -0.3}) == 0.0
    weights = {"synthetic": 1.0, "smoke": 0.0}
    assert ladder_fitness({"synthetic": 0.7, "smoke": 0.2}, weights) == pytest.approx(0.7)
    assert ladder_fitness({"synthetic": 0.7, "smoke": 0.3}, {"synthetic": 1, "smoke": 1}) == pytest.approx(0.5)
    warnings = calibration_warnings(["synthetic", "smoke"], {"smoke": {"spearman_expected": 0.1}})
    assert "not calibrated" in warnings[0] and "not earned" in warnings[1]


def test_rank_statistics_follow_the_panel_order_and_the_seeds():
    def program(*scores):
        return {"status": "ok", "score": mean_se(list(scores))}

    ordered = {"softmax_attention": program(0.9, 0.8), "deltanet": program(0.7, 0.75), "gla": program(0.5, 0.45),
               "no_mixing": program(0.1, 0.2)}
    stats = rank_statistics(ordered, seeds=2)
    assert stats["spearman_expected"] == pytest.approx(1.0) and stats["spearman_seeds"] == pytest.approx(1.0)
    reversed_panel = {name: program(1 - p["score"]["mean"]) for name, p in ordered.items()}
    assert rank_statistics(reversed_panel, seeds=1)["spearman_expected"] == pytest.approx(-1.0)


def test_standings_weigh_each_rung_a_candidate_reached():
    from agent.report import standings

    rows = [{"index": 2, "name": "cand", "fidelity": "synthetic", "fitness": 0.8},
            {"index": 5, "name": "cand.smoke", "fidelity": "smoke", "fitness": 0.3, "origin": "promoted",
             "promoted_from": 2}]
    text = standings(rows, {"synthetic": 1.0, "smoke": 0.0})
    assert "cand: synthetic 0.800 (weight 1.00), smoke 0.300 (weight 0.00) -> standing 0.800" in text
    assert "standing 0.550" in standings(rows, {"synthetic": 1.0, "smoke": 1.0})
    assert standings(rows[:1], {}) == ""
