"""Follow job chains through the API and say, in plain words, whenever a stage starts, ends or fails.

    follower = Follower(client, time.monotonic())
    await wait_for(follower, [root_job_id])

Lines read like `   #3 train     crashed: RuntimeError: ... (the engineer will try a repair)` or
`   #3 train     will retry: attempt 1 of 3 failed: the machine was too busy ...`.
"""

from __future__ import annotations

import asyncio
import time

from database.client import ApiClient

TERMINAL = {"succeeded", "failed"}
REASON_CHARS = 160


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:REASON_CHARS] if (text or "").strip() else ""


def describe(job: dict) -> str | None:
    """What happened to a job at its current status and attempt, or None when there is nothing to say."""
    status, attempts, most = job["status"], job.get("attempts") or 0, job.get("max_attempts") or 1
    result, error = job.get("result") or {}, _first_line(job.get("error"))
    if status == "running":
        return "started" if attempts <= 1 else f"started again (attempt {attempts} of {most})"
    if status == "queued":
        return f"will retry: attempt {attempts} of {most} failed: {error}" if attempts and error else None
    if status == "succeeded" and result.get("failed"):
        # The stage ended and handed the candidate on: its program crashed, and the engineer repairs it.
        return f"crashed: {_first_line(str(result['failed']))} (the engineer will try a repair)"
    if status == "succeeded":
        return "done"
    if job.get("cancelled"):
        return f"cancelled: {error}"
    return f"failed: {error}" if error else "failed"


class Follower:
    """Polls job chains and prints a line whenever a stage starts, finishes or fails."""

    def __init__(self, client: ApiClient, started: float):
        self.client, self.started, self.seen = client, started, set()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)

    async def chain(self, root: str) -> tuple[bool, int | None]:
        """(finished, experiment index) of the chain started by job `root`."""
        jobs = (await self.client.list_jobs(root=root, limit=1000))["data"]
        experiment = None
        for job in jobs:
            experiment = job.get("experiment") or (job.get("result") or {}).get("experiment") or experiment
            key = (job["id"], job["status"], job["attempts"])
            if key in self.seen:
                continue
            self.seen.add(key)
            text = describe(job)
            if text:
                where = f"#{experiment}" if experiment else "new"
                self.say(f"{where:>5} {job['kind']:<9} {text}")
        finished = bool(jobs) and all(job["status"] in TERMINAL for job in jobs)
        return finished, experiment


async def wait_for(follower: Follower, roots: list[str]) -> None:
    while True:
        done = [(await follower.chain(root))[0] for root in roots]
        if all(done):
            return
        await asyncio.sleep(1.0)
