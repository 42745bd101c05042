import math

from agent.report import results_table, write_plots


def experiment(index, parent, fitness, status="analysed", baseline=False, val_loss=3.0):
    return {"index": index, "name": f"exp-{index}", "parent": parent, "status": status, "is_baseline": baseline,
            "fitness": fitness, "train": {"val_loss": val_loss, "loss_curve": [[0, 6.0], [10, 4.0], [20, val_loss]]},
            "eval": {"average": 0.3, "recall": 0.1}, "costs": {"cpu_seconds": 40.0, "llm_tokens": 0},
            "failure": {"stage": "engineer", "reason": "not causal: output at t=3 changed"} if status == "failed" else None}


def test_table_shows_every_experiment_and_failure_reasons():
    rows = [experiment(1, None, 0.5, baseline=True), experiment(2, 1, 0.61, val_loss=2.9),
            experiment(3, 1, None, status="failed", val_loss=math.nan)]
    table = results_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["index", "name", "rung", "parent"]
    assert "2.9000" in lines[3] and "0.610" in lines[3]
    assert "failed@engineer" in lines[4] and "not causal" in table


def test_replicated_values_show_mean_and_standard_error_and_the_claim():
    from database.stats import mean_se

    row = experiment(2, 1, 0.8)
    row.update(fidelity="synthetic", beats_baseline=True)
    row["train"]["val_loss_stats"] = mean_se([2.0, 2.2, 2.1])
    row["train"]["val_loss"] = 2.1
    line = results_table([experiment(1, None, 0.5, baseline=True), row]).splitlines()[3]
    assert "2.1000 ± 0.0577" in line and "synthetic" in line and " yes " in line


def test_plots_are_written_as_pngs(tmp_path):
    rows = [experiment(1, None, 0.5, baseline=True), experiment(2, 1, 0.7), experiment(3, 2, 0.4)]
    tree = [{"index": r["index"], "parent": r["parent"], "fitness": r["fitness"], "name": r["name"]} for r in rows]
    paths = write_plots(rows, tree, tmp_path)
    assert {p.name for p in paths} == {"loss_curves.png", "fitness.png", "scores.png", "lineage.png",
                                       "discovery.png"}
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_loss_plot_draws_validation_curves_with_the_baseline_band_and_fitness_parts(tmp_path):
    from agent.plots import mean_se_curve, seed_curves

    rows = [experiment(1, None, 0.5, baseline=True), experiment(2, 1, 0.7)]
    for i, row in enumerate(rows):
        row["train"]["val_curves"] = [[[0, 6.0], [50, 4.0 + s / 10], [100, 3.0 + i / 10 + s / 10]] for s in range(3)]
        row["fitness_parts"] = {"loss": 0.6, "benchmark": 0.5, "judge": None}
        row["evidence"] = {"loss": {"difference": 0.1, "se": 0.05, "reference": 3.1}, "benchmark": None}
    steps, means, ses = mean_se_curve(seed_curves(rows[0]))
    assert steps == [0, 50, 100] and means[-1] == 3.1 and round(ses[-1], 4) == 0.0577
    paths = write_plots(rows, [], tmp_path)
    assert all(p.stat().st_size > 5000 for p in paths)
