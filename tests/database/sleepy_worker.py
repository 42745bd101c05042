"""A worker process for the crash tests: it handles `train` jobs by sleeping `payload.seconds`.

    python tests/database/sleepy_worker.py URL TOKEN WORKER_ID
"""

import asyncio
import sys

from database.client import ApiClient
from database.worker import Outcome, serve


async def handle(job, client):
    await asyncio.sleep(job["payload"].get("seconds", 0))
    return Outcome({"slept": job["payload"].get("seconds", 0)}, next_jobs=[])


async def main(url: str, token: str, worker: str) -> None:
    async with ApiClient(url, token) as client:
        await serve(client, ["train"], handle, worker_id=worker, heartbeat_s=0.3, poll_interval_s=0.1)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
