"""Comparing two runs from their directories: the exported experiments, or the embedded database of an older run."""

import json
import sqlite3

import pytest

from agent.compare import best_so_far, compare_plots, compare_table, matched
from agent.report import main as report_main
from agent.runfiles import load_run, write_export
from trainer.cli import UsageError

SEED = "class DeltaNet:  # the seed\n    pass\n"
WIDE = "class DeltaNet:  # wider heads\n    pass\n"


def stats(mean, se):
    return {"mean": mean, "se": se, "n": 3, "per_seed": [mean - se, mean, mean + se]}


def experiment(index, name, program, *, fidelity="synthetic", baseline=False, val_loss=0.2, fitness=0.5,
               beats=False, cpu_s=400.0, parent=None):
    curves = [[[0, 5.56], [600, 1.0 + i / 10], [1200, val_loss + i / 100]] for i in range(3)]
    return {
        "index": index, "name": name, "program": program, "fidelity": fidelity, "is_baseline": baseline,
        "parent": parent, "origin": "seed" if baseline else "llm", "status": "analysed",
        "train": {"val_loss": val_loss, "val_loss_stats": stats(val_loss, 0.01), "val_curve": curves[0],
                  "val_curves": curves, "seeds": [0, 1, 2], "loss_curve": [[0, 5.5], [1199, val_loss]]},
        "eval": {"average": 0.9, "recall": 0.95, "benchmark_stats": stats(0.925, 0.01)},
        "fitness": fitness, "fitness_parts": {"loss": fitness, "benchmark": 0.5, "judge": None},
        "evidence": {"loss": {"difference": 0.01, "se": 0.02, "z": 0.5, "reference": 0.2},
                     "benchmark": {"difference": -0.001, "se": 0.005, "z": -0.2, "reference": 0.9}},
        "beats_baseline": int(beats), "costs": {"cpu_seconds": cpu_s, "gpu_seconds": 0.0, "llm_tokens": 120},
        "failure": None,
    }


@pytest.fixture
def two_runs(tmp_path):
    a = [experiment(1, "seed-deltanet-synthetic", SEED, baseline=True),
         experiment(2, "delta-h0p5-aaaaaa", WIDE, val_loss=0.15, fitness=0.7, beats=True, parent=1),
         experiment(3, "delta-c6-bbbbbb", "other A", fitness=0.45, parent=1)]
    # Run B named the same wide-heads program differently: it is still matched, by its program text.
    b = [experiment(1, "seed-deltanet-synthetic", SEED, baseline=True, val_loss=0.21),
         experiment(2, "delta-h0p5-cccccc", WIDE, val_loss=0.18, fitness=0.6, parent=1, cpu_s=900.0)]
    write_export(tmp_path / "run-a", a, [])
    # Run B is an older run: no export, only the embedded database's table of documents.
    (tmp_path / "run-b").mkdir()
    connection = sqlite3.connect(tmp_path / "run-b" / "db.sqlite")
    connection.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY, _id TEXT, data TEXT NOT NULL)")
    connection.executemany("INSERT INTO experiments (_id, data) VALUES (?, ?)",
                           [(str(e["index"]), json.dumps({**e, "_id": {"oid": "x"}})) for e in b])
    connection.commit()
    connection.close()
    return tmp_path / "run-a", tmp_path / "run-b"


def test_runs_load_from_the_export_and_from_an_old_database(two_runs):
    a, b = (load_run(path) for path in two_runs)
    assert [e["index"] for e in a.experiments] == [1, 2, 3] and a.name == "run-a"
    assert [e["name"] for e in b.experiments] == ["seed-deltanet-synthetic", "delta-h0p5-cccccc"]
    assert "_id" not in b.experiments[0] and {n["index"] for n in b.tree} == {1, 2}


def test_candidates_are_matched_by_program_and_rung(two_runs):
    a, b = (load_run(path) for path in two_runs)
    pairs = [(ea["index"], eb["name"]) for ea, eb in matched(a, b)]
    assert pairs == [(1, "seed-deltanet-synthetic"), (2, "delta-h0p5-cccccc")]
    table = compare_table(a, b)
    assert "best fitness" in table and "0.700 (#2 delta-h0p5-aaaaaa)" in table and "0.600" in table
    assert "candidates in both runs (2)" in table and "0.1500 ± 0.0100" in table and "0.1800 ± 0.0100" in table


def test_best_fitness_follows_compute(two_runs):
    hours, best = best_so_far(load_run(two_runs[0]))
    assert best == [0.7, 0.7] and hours == pytest.approx([800 / 3600, 1200 / 3600])


def test_compare_writes_a_table_and_three_plots(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert report_main(["compare", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "A: run-a" in printed and "B: run-b" in printed
    for name in ("best_fitness.png", "discovery.png", "matched.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG" and (out / name).stat().st_size > 5000


def test_a_run_without_experiments_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="empty"):
        load_run(tmp_path / "empty")
    with pytest.raises(UsageError, match="no such run directory"):
        load_run(tmp_path / "missing")


def test_plots_of_unrelated_runs_still_draw(two_runs, tmp_path):
    a = load_run(two_runs[0])
    lonely = load_run(two_runs[0])
    lonely.experiments = [dict(e, program=e["program"] + "#", name=e["name"] + "x") for e in lonely.experiments]
    assert matched(a, lonely) == [] and "no candidate in common" in compare_table(a, lonely)
    assert len(compare_plots(a, lonely, tmp_path / "none")) == 3


def test_the_export_holds_every_session_of_the_run(tmp_path):
    """The API pages its experiments; the export gathers them all, whichever session made them."""
    import asyncio

    from agent.runfiles import fetch_run

    class Client:
        documents = [experiment(i, f"e{i}", f"program {i}") for i in range(1, 1203)]

        async def list_experiments(self, skip=0, limit=50):
            return {"data": self.documents[skip:skip + limit], "count": len(self.documents)}

        async def tree(self):
            return [{"index": 1, "parent": None}]

    experiments, tree = asyncio.run(fetch_run(Client()))
    assert [e["index"] for e in experiments] == list(range(1, 1203)) and tree == [{"index": 1, "parent": None}]
    run = load_run(write_export(tmp_path, experiments, tree).parent)
    assert len(run.experiments) == 1202 and run.tree == tree
