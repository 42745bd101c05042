"""`python -m agent.pipeline` on its default ladder (synthetic, then smoke), embedded and offline, shrunk.

Every score comes from two seeds, the baseline's with the same seeds; the best candidate of the
synthetic rung is promoted to smoke and scored there against the smoke baseline; a calibration
file in the run directory reaches the API, the project's own calibration stands in for the rung
without one, and a rung that has not earned its place is warned about.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agent.ladder import calibration_warnings

ROOT = Path(__file__).resolve().parents[1]
SHRUNK = ["steps=24", "warmup_steps=4", "eval_batches=1", "replicates=2", "smoke.eval_every=12"]


@pytest.mark.timeout(900)
def test_the_default_ladder_scores_with_seeds_and_promotes_the_best(tmp_path, start_api):
    run_dir = tmp_path / "run"
    (run_dir / "calibration").mkdir(parents=True)
    calibration = {"fidelity": "synthetic", "seeds": 3, "spearman_expected": 0.93, "spearman_seeds": 0.95,
                   "programs": {"deltanet": {"status": "ok", "score": {"mean": 0.8, "se": 0.01, "per_seed": []}}}}
    (run_dir / "calibration" / "synthetic.json").write_text(json.dumps(calibration))
    env = {**os.environ, "RUN_DIR": str(run_dir)}
    env.pop("LLM_BASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "agent.pipeline", "--experiments", "2", "--run-dir", str(run_dir),
                           "--set", *SHRUNK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "rung 'synthetic'" not in output  # calibrated in the run directory, and earned

    api = start_api(run_dir=run_dir)
    experiments = httpx.get(f"{api.url}/experiments", params={"limit": 100}, timeout=10).json()["data"]
    by_rung = {rung: [e for e in experiments if e["fidelity"] == rung] for rung in ("synthetic", "smoke")}
    [base_syn] = [e for e in by_rung["synthetic"] if e["is_baseline"]]
    [base_smoke] = [e for e in by_rung["smoke"] if e["is_baseline"]]
    candidates = [e for e in by_rung["synthetic"] if not e["is_baseline"] and e.get("fitness") is not None]
    assert len(candidates) == 2
    for e in [base_syn, base_smoke, *candidates]:
        assert e["status"] == "analysed" and e["train"]["seeds"] == [0, 1]
        assert e["train"]["val_loss_stats"]["n"] == 2 and e["eval"]["benchmark_stats"]["n"] == 2
    for e in candidates:
        assert set(e["eval"]["tasks"]) >= {"mqar_4", "mqar_16", "noisy_recall", "selective_copy", "compression"}
        # (The embedded database may hand a boolean back as 0 or 1.)
        assert e["beats_baseline"] in (True, False) and e["evidence"]["benchmark"]["se"] >= 0

    # The better candidate went on to smoke, as a copy that says where it came from.
    best = max(candidates, key=lambda e: (e["fitness"], -e["index"]))
    [promoted] = [e for e in by_rung["smoke"] if not e["is_baseline"]]
    assert promoted["origin"] == "promoted" and promoted["promoted_from"] == best["index"] == promoted["parent"]
    assert promoted["program"] == best["program"] and promoted["status"] == "analysed"
    assert promoted["eval"]["tier"] == "smoke" and promoted["fitness"] is not None

    stored = httpx.get(f"{api.url}/calibrations", timeout=10).json()
    assert stored["synthetic"]["spearman_expected"] == 0.93 and not stored["synthetic"].get("shipped")
    # The smoke rung has no calibration in the run: the project's own stands in, and what it says is said.
    assert stored["smoke"]["shipped"] is True
    for line in calibration_warnings(["synthetic", "smoke"], stored):
        assert line in output, line
    table = done.stdout.split("plots:")[0]
    assert "±" in table and f"{promoted['name'][:32]}" in table and "synthetic" in table
