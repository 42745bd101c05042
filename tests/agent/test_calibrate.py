"""`python -m agent.calibrate` on a reduced panel: the synthetic rung must rank known layers as the literature does.

Four members from four tiers (softmax attention, RetNet, causal mean, no mixing), one seed each, a
shortened budget: if the rung's ranking breaks (a task that no longer needs memory, a scoring bug, a
budget too short for attention to learn), the Spearman correlation or the margins fall and this fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ["softmax_attention", "retnet", "causal_mean", "no_mixing"]


@pytest.mark.timeout(900)
def test_the_synthetic_rung_ranks_a_reduced_panel_in_the_expected_order(tmp_path):
    out = tmp_path / "calibration" / "synthetic.json"
    done = subprocess.run(
        [sys.executable, "-m", "agent.calibrate", "--fidelity", "synthetic", "--only", ",".join(MEMBERS),
         "--seeds", "1", "--set", "steps=800", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "RUN_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=880)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert list(record["programs"]) == MEMBERS and record["seeds"] == 1
    score = {name: p["score"]["mean"] for name, p in record["programs"].items()}
    # Four tiers, four places: any swap of two members fails.
    assert record["spearman_expected"] == pytest.approx(1.0), (score, done.stdout)
    # Attention solves recall; a layer without memory cannot: the gap is most of the scale.
    assert score["softmax_attention"] > 0.9 and score["no_mixing"] < 0.25, score
    assert score["retnet"] - score["causal_mean"] > 0.2 and score["causal_mean"] - score["no_mixing"] > 0.1, score
    mqar_16 = {name: p["tasks"]["mqar_16"]["mean"] for name, p in record["programs"].items()}
    # A fixed decay forgets the first of 16 pairs; attention keeps them all.
    assert mqar_16["softmax_attention"] > 0.95 and mqar_16["softmax_attention"] - mqar_16["retnet"] > 0.05, mqar_16
    assert mqar_16["no_mixing"] < 0.1, mqar_16
    assert "Spearman with the expected order" in done.stdout and out.with_suffix(".png").exists()


def test_rescore_recomputes_the_shipped_calibration_under_new_task_weights(tmp_path, monkeypatch, capsys):
    from agent.calibrate import main

    shipped = ROOT / "trainer" / "panel" / "calibrations" / "synthetic.json"
    record = json.loads(shipped.read_text())
    monkeypatch.delenv("SYNTHETIC_WEIGHTS", raising=False)
    same = tmp_path / "same" / "synthetic.json"
    same.parent.mkdir()
    assert main(["--fidelity", "synthetic", "--rescore", str(shipped), "--out", str(same)]) == 0
    again = json.loads(same.read_text())
    for name, program in record["programs"].items():  # the shipped scores are the default weights' scores
        assert again["programs"][name]["score"]["per_seed"] == pytest.approx(program["score"]["per_seed"])
    monkeypatch.setenv("SYNTHETIC_WEIGHTS", "selective_copy=1")
    equal = tmp_path / "equal" / "synthetic.json"
    equal.parent.mkdir()
    assert main(["--fidelity", "synthetic", "--rescore", str(shipped), "--out", str(equal)]) == 0
    rescored = json.loads(equal.read_text())
    tasks = record["programs"]["gla"]["tasks"]
    by_hand = [sum(values["per_seed"][i] for task, values in tasks.items() if task != "val_loss") / 7 for i in range(3)]
    assert rescored["programs"]["gla"]["score"]["per_seed"] == pytest.approx(by_hand)
    assert rescored["score_weights"]["selective_copy"] == 1 and rescored["spearman_expected"] is not None
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    before = shipped.read_text()
    assert main(["--fidelity", "synthetic", "--rescore", str(shipped)]) == 0  # no --out: the run's folder
    assert shipped.read_text() == before and (tmp_path / "run" / "calibration" / "synthetic.json").exists()
    assert main(["--fidelity", "smoke", "--rescore", str(shipped), "--out", str(equal)]) == 2
    assert "only a synthetic calibration" in capsys.readouterr().err
