"""A fixed sample of 20 of the 106 published ASI-Arch programs trains at smoke scale on a CPU, unchanged.

Slow (about 20 minutes on 2 cores): `pytest -m slow tests/trainer/test_published.py`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_published_sample_trains(shared_dir, tmp_path):
    report = tmp_path / "published.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "published_smoke.py"), "--path",
         str(shared_dir / "asi-arch" / "architectures_106.json"), "--cache", str(tmp_path / "cache"), "--jobs", "2",
         "--set", "steps=60", "eval_batches=4", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=3500)
    results = json.loads(report.read_text())
    failures = {r["name"]: r["reason"] for r in results["results"] if r["status"] != "ok"}
    assert failures == {}, completed.stdout[-5000:]
    assert completed.returncode == 0
    assert [r["position"] for r in results["results"]] == random.Random(0).sample(range(106), 20)
    for r in results["results"]:
        assert r["val_loss"] < r["val_loss_start"] - 0.5, r["name"]
