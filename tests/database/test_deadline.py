"""Workers in a time-limited allocation: they stop leasing before it ends and hand their job back on SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from database.client import ApiClient
from database.deadline import lease_deadline, parse_end_time
from database.worker import serve
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

# A real worker process (run_worker, as every role's entry point uses) whose train jobs sleep for a minute.
SLEEPY = """
import asyncio, logging, sys
from database.worker import run_worker
logging.basicConfig(level=logging.INFO)
async def handle(job, client):
    await asyncio.sleep(60)
    return {}
sys.exit(run_worker(["train"], handle, api_url=sys.argv[1], token=sys.argv[2], worker_id="sleepy",
                    poll_interval_s=0.1))
"""


def test_deadline_sources_in_order():
    now = 1000.0
    assert lease_deadline({}, now=now) is None
    assert lease_deadline({"WORKER_STOP_LEASING_AFTER_S": "50"}, now=now) == 1050.0
    # SLURM's own end time wins over the script's fallback; the margin is taken off it.
    env = {"SLURM_JOB_END_TIME": "5000", "WORKER_LEASE_MARGIN_S": "120", "WORKER_STOP_LEASING_AFTER_S": "50"}
    assert lease_deadline(env, now=now) == 4880.0
    asked = []

    def squeue(job_id):
        asked.append(job_id)
        return 3000.0

    assert lease_deadline({"SLURM_JOB_ID": "17", "WORKER_LEASE_MARGIN_S": "0"}, now=now, end_time_of=squeue) == 3000.0
    assert asked == ["17"]
    # squeue says NONE (no limit): fall back to the script's setting.
    env = {"SLURM_JOB_ID": "17", "WORKER_STOP_LEASING_AFTER_S": "60"}
    assert lease_deadline(env, now=now, end_time_of=lambda _: None) == 1060.0


def test_squeue_end_time_is_local_time():
    assert parse_end_time("2026-01-31T12:00:00\n") == datetime(2026, 1, 31, 12).timestamp()
    assert parse_end_time("NONE") is None and parse_end_time("Unknown") is None and parse_end_time("") is None


async def test_serve_finishes_the_job_in_hand_but_leases_none_after_the_deadline(api_client):
    first = await api_client.create_job(kind="train")
    second = await api_client.create_job(kind="train")

    async def slow(job, client):
        await asyncio.sleep(0.5)  # still running when the deadline passes: it is finished, not dropped
        return {"ok": True}

    handled = await serve(api_client, ["train"], slow, poll_interval_s=0.05, lease_until=time.time() + 0.2)
    assert handled == 1
    assert (await api_client.get_job(first["id"]))["status"] == "succeeded"
    assert (await api_client.get_job(second["id"]))["status"] == "queued"
    assert await serve(api_client, ["train"], slow, lease_until=time.time() - 1) == 0
    assert (await api_client.get_job(second["id"]))["attempts"] == 0


async def test_sigterm_hands_the_job_back_at_once(start_api):
    api = start_api()
    async with ApiClient(api.url, api.token) as client:
        job = await client.create_job(kind="train", timeout=600)  # the lease alone would hold it for 10 minutes
        worker = subprocess.Popen([sys.executable, "-c", SLEEPY, api.url, api.token], cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)

        async def running():
            return (await client.get_job(job["id"]))["status"] == "running"

        await wait_until(running)
        # SLURM may signal twice (early --signal, then at the limit): the second must not abort the hand-back.
        worker.send_signal(signal.SIGTERM)
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(worker.communicate, timeout=30)
        assert worker.returncode == 0, output
        back = await client.get_job(job["id"])
        assert back["status"] == "queued" and back["worker"] is None, back
        assert "worker sleepy stopped" in back["error"] and "handed job" in output, output


async def test_a_worker_past_its_deadline_leases_nothing(start_api):
    api = start_api()
    async with ApiClient(api.url, api.token) as client:
        job = await client.create_job(kind="train")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKER_STOP_LEASING_AFTER_S": "0"}
        env.pop("SLURM_JOB_ID", None)
        env.pop("SLURM_JOB_END_TIME", None)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", SLEEPY, api.url, api.token], cwd=ROOT,
                                       env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "leases no new job" in done.stderr, done.stderr
        assert (await client.get_job(job["id"]))["attempts"] == 0
