"""A real SLURM: `agent.launch slurm` submits 2 trainer workers to a one-node cluster started by the test.

The cluster (munged, slurmctld, slurmd from Debian's slurm-wlm and munge) lives in a temporary folder
(see tests/slurm_cluster.py). The workers lease from a real candidate API on the embedded database,
train 2 queued candidates at the smoke scale to completion, and then, told to stop as SLURM does before
its time limit, hand a third job back to the queue. About two minutes on 2 cores. Skipped, with the
reason, where SLURM is not installed or cannot run (not root, a daemon that refuses to start).
"""

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.cluster import LocalCluster
from database.client import ApiClient
from tests.slurm_cluster import OneNodeSlurm, SlurmUnavailable
from trainer.fidelity import parse_overrides
from trainer.layers import seed_program

ROOT = Path(__file__).resolve().parents[1]
FAST = ["steps=40", "eval_batches=2", "eval_every=20", "replicates=1"]  # as tests/test_distributed.py


@pytest.fixture
def slurm():
    # A short folder of its own: munged's socket path must stay under the 108 bytes a unix socket allows.
    home = Path(tempfile.mkdtemp(prefix="slurm-"))
    cluster = OneNodeSlurm(home)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"no SLURM cluster here: {err}")
    yield cluster
    cluster.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def api(tmp_path):
    cluster = LocalCluster(tmp_path / "run", workers={}).start()  # the API and its embedded database only
    yield cluster
    cluster.stop()


async def queue_training(client: ApiClient, name: str, overrides: list[str]) -> dict:
    experiment = await client.create_experiment(name=name, program=seed_program(), fidelity="smoke", origin="seed")
    payload = {"fidelity": "smoke", "overrides": parse_overrides(overrides)}
    return await client.create_job(kind="train", experiment=experiment["index"], payload=payload, timeout=120)


async def wait_for(predicate, what: str, timeout_s: float, explain):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}\n{explain()}")


def worker_logs(run_dir: Path) -> str:
    logs = sorted((run_dir / "logs" / "slurm").glob("*.out"))
    return "\n".join(f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in logs)


@pytest.mark.timeout(900)
async def test_two_slurm_trainers_train_two_candidates(slurm, api, tmp_path):
    run_dir = tmp_path / "run"
    async with ApiClient(api.url, api.token) as client:
        jobs = [await queue_training(client, f"candidate-{i}", FAST) for i in range(2)]
        script = tmp_path / "trainers.sbatch"
        launched = subprocess.run(
            [sys.executable, "-m", "agent.launch", "slurm", "--role", "trainer", "--count", "2", "--gpus-per-job", "0",
             "--cpus-per-task", "1", "--time", "15", "--api", api.url, "--run-dir", str(run_dir), "--out", str(script)],
            cwd=ROOT, env={**slurm.env(), "API_TOKEN": api.token}, capture_output=True, text=True, timeout=120)
        assert launched.returncode == 0, launched.stderr
        job_id = re.search(r"submitted job (\d+)", launched.stdout).group(1)
        assert f"wrote {script}" in launched.stdout and "#SBATCH --array=0-1" in script.read_text()
        assert api.token not in script.read_text()

        async def trained():
            states = [(await client.get_job(job["id"]))["status"] for job in jobs]
            assert "failed" not in states, f"{states}\n{worker_logs(run_dir)}"
            return states == ["succeeded", "succeeded"]

        explain = lambda: f"squeue: {slurm.squeue(job_id)!r}\n{worker_logs(run_dir)}"  # noqa: E731
        await wait_for(trained, "2 trainings", 600, explain)
        for job in jobs:
            done = await client.get_job(job["id"])
            assert done["attempts"] == 1, done
            experiment = await client.get_experiment(job["experiment"])
            assert experiment["status"] == "trained" and experiment["train"]["val_loss"] > 0, experiment
        # Both array tasks ran a worker, which took its time limit from SLURM.
        logs = worker_logs(run_dir)
        assert f"{job_id}_0.out" in logs and f"{job_id}_1.out" in logs, logs
        assert logs.count("leasing until") == 2, logs

        # A long training is running when the workers get SIGTERM (as --signal=B:TERM sends it before the
        # limit): it goes back to the queue at once, its lease and its remaining attempts intact.
        long = await queue_training(client, "candidate-long", ["steps=100000", "replicates=1"])

        async def running():
            return (await client.get_job(long["id"]))["status"] == "running"

        await wait_for(running, "the long training to start", 120, explain)
        await asyncio.sleep(3.0)
        subprocess.run(["scancel", "--batch", "--signal=TERM", job_id], env=slurm.env(), check=True, timeout=30)

        async def gone():
            return slurm.squeue(job_id) == ""

        await wait_for(gone, "the workers to exit", 120, explain)
        back = await client.get_job(long["id"])
        assert back["status"] == "queued" and back["attempts"] == 1 and "stopped" in back["error"], back
        assert "handed job" in worker_logs(run_dir)
