"""Distributed on one machine: the API and every role as separate processes on loopback ports.

`pipeline.py --api` runs 3 experiments while the trainer worker is SIGKILLed mid-training and
restarted; the run still completes with every experiment accounted for, none lost, none twice.
About a minute and a half on 2 cores.
"""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
FAST = ["steps=40", "eval_batches=2", "eval_every=20", "replicates=1"]


def running_train_job(cluster: LocalCluster) -> dict | None:
    jobs = httpx.get(f"{cluster.url}/jobs", params={"kind": "train", "status": "running"}, timeout=10).json()
    return (jobs.get("data") or [None])[0]


# Minutes of training; `make test-all` runs it (tests/database/test_crashes.py covers killed workers quickly).
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_pipeline_survives_a_sigkilled_trainer(tmp_path):
    cluster = LocalCluster(tmp_path / "run").start()
    try:
        pipeline = subprocess.Popen(
            [sys.executable, "-m", "agent.pipeline", "--api", cluster.url, "--token", cluster.token,
             "--experiments", "3", "--run-dir", str(tmp_path / "run"), "--lease-s", "6", "--fidelity", "smoke", "--set", *FAST],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Kill the trainer once it is training (the baseline's run is the first chance).
        deadline = time.monotonic() + 600
        while running_train_job(cluster) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        killed = running_train_job(cluster)
        assert killed is not None, "no training started"
        time.sleep(2.0)
        cluster.kill("trainer")
        cluster.start_worker("trainer")
        output, _ = pipeline.communicate(timeout=1200)
        assert pipeline.returncode == 0, output

        job = httpx.get(f"{cluster.url}/jobs/{killed['id']}", timeout=10).json()
        assert job["status"] == "succeeded" and job["attempts"] >= 2, job
        experiments = httpx.get(f"{cluster.url}/experiments", params={"limit": 100}, timeout=10).json()["data"]
        scored = [e for e in experiments if e.get("fitness") is not None]
        assert len(scored) == 4, output  # the baseline and three new experiments
        # Every experiment is finished (analysed or failed with a reason); none is stuck mid-way.
        assert all(e["status"] in ("analysed", "failed") for e in experiments), [e["status"] for e in experiments]
        # Nothing ran twice: one train job succeeded per trained experiment.
        train_jobs = httpx.get(f"{cluster.url}/jobs", params={"kind": "train", "limit": 1000}, timeout=10).json()["data"]
        done = [j["experiment"] for j in train_jobs if j["status"] == "succeeded" and not (j.get("result") or {}).get("failed")]
        assert len(done) == len(set(done))
        assert "done: 3 of 3 experiments scored" in output and "seed-deltanet-smoke" in output, output[-3000:]
    finally:
        cluster.stop()
