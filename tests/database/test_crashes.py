"""The queue and the store under real processes: concurrency, a killed worker, a killed API."""

import asyncio
import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

from database.client import ApiClient, LeaseLost
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


async def test_64_workers_do_500_jobs_exactly_once(start_api):
    api = start_api()
    async with ApiClient(api.url, api.token) as admin:
        jobs = await asyncio.gather(*(admin.create_job(kind="train", payload={"n": i}) for i in range(500)))
    done = collections.Counter()

    async def worker(number):
        async with ApiClient(api.url, api.token) as client:
            while (job := await client.lease_job(["train"], f"w{number}")) is not None:
                await client.heartbeat(job["id"], f"w{number}")
                await client.complete_job(job["id"], f"w{number}", {"by": number})
                done[job["id"]] += 1

    await asyncio.gather(*(worker(i) for i in range(64)))
    assert sum(done.values()) == 500 and set(done.values()) == {1}
    assert set(done) == {job["id"] for job in jobs}
    async with ApiClient(api.url, api.token) as admin:
        assert (await admin.stats())["jobs"]["succeeded"] == 500


def spawn_worker(api, name):
    return subprocess.Popen([sys.executable, str(ROOT / "tests/database/sleepy_worker.py"), api.url, api.token, name],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)


async def test_killed_worker_job_is_re_leased_and_late_heartbeat_is_refused(start_api):
    api = start_api()
    async with ApiClient(api.url, api.token) as client:
        job = await client.create_job(kind="train", payload={"seconds": 3}, timeout=1.0)
        doomed = spawn_worker(api, "doomed")

        async def running():
            current = await client.get_job(job["id"])
            return current["status"] == "running" and current["worker"] == "doomed"

        await wait_until(running)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        survivor = spawn_worker(api, "survivor")
        try:
            async def finished():
                current = await client.get_job(job["id"])
                return current if current["status"] == "succeeded" else None

            final = await wait_until(finished)
            assert final["worker"] == "survivor" and final["attempts"] == 2
            assert "doomed" in final["errors"][0]["reason"]
            try:
                await client.heartbeat(job["id"], "doomed")
                raise AssertionError("a dead worker's heartbeat was accepted")
            except LeaseLost as err:
                assert err.status == 409
            assert (await client.get_job(job["id"])) == final
        finally:
            survivor.kill()
            survivor.wait()


async def test_killed_api_restarts_on_the_same_data_without_loss(start_api, tmp_path):
    run_dir = tmp_path / "persist"
    api = start_api(run_dir)
    async with ApiClient(api.url, api.token) as client:
        seed = await client.create_experiment(name="seed", program="p", is_baseline=True)
        for i in range(10):
            await client.create_experiment(name=f"kid{i}", program="p", parent=seed["index"])
        await client.update_experiment(3, train={"loss_curve": [[0, 5.0], [5, 4.0]], "val_loss": 4.0},
                                       costs={"gpu_seconds": 2.5})
        job = await client.create_job(kind="train", experiment=3)
        await client.lease_job(["train"], "w")
        await client.complete_job(job["id"], "w", {"ok": True}, [{"kind": "evaluate", "experiment": 3}])
    api.kill()
    restarted = start_api(run_dir)
    async with ApiClient(restarted.url, restarted.token) as client:
        assert (await client.list_experiments(limit=100))["count"] == 11
        third = await client.get_experiment(3)
        assert third["train"]["val_loss"] == 4.0 and third["costs"]["gpu_seconds"] == 2.5
        assert (await client.get_job(job["id"]))["status"] == "succeeded"
        assert (await client.list_jobs(kind="evaluate", status="queued"))["count"] == 1
        # The counter survived too: the next index follows the last committed one.
        assert (await client.create_experiment(name="after", program="p"))["index"] == 12
