"""The loop every worker runs: lease a job, heartbeat while handling it, report the outcome.

    async def handle(job: dict, client: ApiClient) -> dict | Outcome: ...
    await serve(client, kinds=["train"], handler=handle)

A returned dict completes the job and enqueues the next stage for the same experiment with the same
payload; an `Outcome` names the follow-up jobs itself. `CandidateError` fails the job for good (the
candidate is at fault, a retry would fail the same way); any other exception is treated as an
infrastructure fault and the job is re-queued while attempts remain. If the lease is lost (the API
gave the job to someone else), the handler is cancelled and nothing is reported.

Inside a time-limited allocation (a SLURM job; see database.deadline) the loop leases nothing new
after the deadline and exits, and SIGTERM, which SLURM sends before it kills, hands the current job
back to the queue at once instead of leaving it to a lease that must first expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from database.client import ApiClient, ApiError, LeaseLost
from database.deadline import lease_deadline
from database.store import NEXT_STAGE

log = logging.getLogger("worker")


@dataclass
class Outcome:
    result: dict
    next_jobs: list[dict] | None = None
    extra: dict = field(default_factory=dict)


class CandidateError(Exception):
    """The candidate itself is at fault (bad program, crash, NaN, over budget): do not retry."""


Handler = Callable[[dict, ApiClient], Awaitable["dict | Outcome"]]


def default_worker_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def default_next_jobs(job: dict) -> list[dict]:
    kind = NEXT_STAGE.get(job["kind"])
    if kind is None or job.get("experiment") is None:
        return []
    return [{"kind": kind, "experiment": job["experiment"], "payload": job.get("payload") or {}}]


def touch_alive_file() -> None:
    """Mark this worker alive for a container healthcheck (WORKER_ALIVE_FILE, when set)."""
    path = os.environ.get("WORKER_ALIVE_FILE")
    if path:
        with open(path, "a"):
            os.utime(path)


async def _heartbeat(client: ApiClient, job: dict, worker: str, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        touch_alive_file()
        try:
            await client.heartbeat(job["id"], worker)
        except LeaseLost:
            raise
        except ApiError as err:
            # The API may be restarting; the lease outlives a few missed beats.
            log.warning("heartbeat for job %s failed: %s", job["id"], err)


async def run_one(client: ApiClient, job: dict, handler: Handler, worker: str,
                  heartbeat_s: float | None = None) -> str:
    """Handle one leased job; returns its final state as seen by this worker."""
    interval = heartbeat_s or max(0.5, float(job.get("timeout", 600)) / 3)
    work = asyncio.create_task(handler(job, client))
    beat = asyncio.create_task(_heartbeat(client, job, worker, interval))
    try:
        done, _ = await asyncio.wait({work, beat}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # Stopped from outside (SIGTERM, Ctrl-C): hand the job back at once rather than wait for the lease.
        work.cancel()
        beat.cancel()
        await asyncio.gather(work, beat, return_exceptions=True)
        await asyncio.shield(client.fail_job(job["id"], worker, f"{job['kind']}: worker {worker} stopped", retry=True))
        log.info("%s stopped: handed job %s back to the queue", worker, job["id"])
        raise
    if beat in done:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        log.warning("lost the lease of job %s: %s", job["id"], beat.exception())
        return "lease-lost"
    beat.cancel()
    await asyncio.gather(beat, return_exceptions=True)
    try:
        outcome = work.result()
    except CandidateError as err:
        await client.fail_job(job["id"], worker, f"{job['kind']}: {err}", retry=False)
        return "failed"
    except Exception as err:
        tail = "".join(traceback.format_exception(err))[-4000:]
        log.error("job %s raised: %s", job["id"], tail)
        await client.fail_job(job["id"], worker, f"{job['kind']} worker error: {err!r}\n{tail}", retry=True)
        return "error"
    if isinstance(outcome, Outcome):
        result, next_jobs = outcome.result, outcome.next_jobs
    else:
        result, next_jobs = outcome, None
    if next_jobs is None:
        next_jobs = default_next_jobs(job)
    await client.complete_job(job["id"], worker, result, next_jobs)
    return "succeeded"


async def serve(
    client: ApiClient,
    kinds: list[str],
    handler: Handler,
    *,
    worker_id: str | None = None,
    once: bool = False,
    max_jobs: int | None = None,
    poll_interval_s: float = 1.0,
    idle_timeout_s: float | None = None,
    heartbeat_s: float | None = None,
    stop: asyncio.Event | None = None,
    lease_until: float | None = None,
) -> int:
    """Serve jobs until `stop` is set, `max_jobs` are handled (`once` means 1), idle too long, or the
    wall clock (epoch seconds) passes `lease_until`: the job in hand is finished, no new one is taken."""
    worker = worker_id or default_worker_id("-".join(kinds))
    limit = 1 if once else max_jobs
    handled, idle, paused = 0, 0.0, False
    stop = stop or asyncio.Event()
    while not stop.is_set() and (limit is None or handled < limit):
        if lease_until is not None and time.time() >= lease_until:
            log.info("%s leases no new job: its allocation ends soon (the deadline passed %.0f s ago)", worker,
                     time.time() - lease_until)
            break
        touch_alive_file()
        try:
            job = await client.lease_job(kinds, worker)
        except ApiError as err:
            log.warning("lease failed: %s", err)
            job = None
        if getattr(client, "run_paused", False) != paused:
            paused = not paused
            # Said once per change, not once per poll: a paused run is waited out, not an idle queue.
            if paused:
                log.warning("%s: the run is paused; leasing nothing until it is resumed", worker)
            else:
                log.warning("%s: the run is resumed", worker)
        if job is None:
            if idle_timeout_s is not None and idle >= idle_timeout_s:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_interval_s)
            except TimeoutError:
                pass
            idle += 0.0 if paused else poll_interval_s
            continue
        idle = 0.0
        log.info("%s took job %s (%s, experiment %s, attempt %s)", worker, job["id"], job["kind"],
                 job.get("experiment"), job.get("attempts"))
        try:
            state = await run_one(client, job, handler, worker, heartbeat_s)
        except LeaseLost as err:
            state = "lease-lost"
            log.warning("job %s: %s", job["id"], err)
        log.info("%s finished job %s: %s", worker, job["id"], state)
        handled += 1
    return handled


def run_worker(
    kinds: list[str], handler: Handler, *, api_url: str, token: str | None, worker_id: str | None = None,
    once: bool = False, poll_interval_s: float = 1.0,
) -> int:
    """Entry point of a worker process: serve until done, SIGTERM or Ctrl-C (which hand the job back),
    or the end of its allocation (see database.deadline)."""
    import signal

    # httpx logs every request at INFO: an idle worker's lease polls (204) would be nearly all of its log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    lease_until = lease_deadline()
    if lease_until is not None:
        log.info("leasing until %s (the allocation's end less a margin)", time.ctime(lease_until))

    async def main() -> int:
        async with ApiClient(api_url, token) as client:
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            stopping = []

            def stop_once() -> None:
                # SLURM may signal again at the hard limit; a second cancel would abort the hand-back.
                if not stopping:
                    stopping.append(True)
                    task.cancel()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop_once)
            try:
                return await serve(client, kinds, handler, worker_id=worker_id, once=once,
                                   poll_interval_s=poll_interval_s, lease_until=lease_until)
            except asyncio.CancelledError:
                log.info("worker stopped")
                return 0

    return asyncio.run(main())
