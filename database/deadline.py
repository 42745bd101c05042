"""When a worker inside a time-limited allocation (a SLURM job) must stop leasing new jobs.

A job leased just before the allocation ends would be killed half-way and cost an attempt, so the
worker stops leasing `WORKER_LEASE_MARGIN_S` seconds before the end and exits once idle. The end
comes from, in order:

1. `SLURM_JOB_END_TIME` (epoch seconds; set by recent SLURM versions),
2. `squeue -h -j $SLURM_JOB_ID -o %e` (the scheduler's view, which also follows a changed limit),
3. `WORKER_STOP_LEASING_AFTER_S`: seconds after the worker started (the sbatch script sets it from
   `--time`, for sites where squeue is not reachable from compute nodes); no margin is taken off.

Outside SLURM, with none of these set, a worker leases for ever, as before.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import datetime

log = logging.getLogger("worker")
DEFAULT_MARGIN_S = 300.0


def squeue_end_time(job_id: str) -> float | None:
    """The job's end time as epoch seconds, or None when squeue cannot tell (no limit, not reachable)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%e"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("cannot ask squeue for the end of job %s: %s", job_id, err)
        return None
    return parse_end_time(out.stdout) if out.returncode == 0 else None


def parse_end_time(text: str) -> float | None:
    """squeue's `%e` (local time, e.g. 2026-01-31T12:00:00) as epoch seconds; None for NONE/Unknown."""
    text = text.strip()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _number(env: Mapping[str, str], name: str) -> float | None:
    try:
        return float(env[name])
    except (KeyError, ValueError):
        return None


def lease_deadline(env: Mapping[str, str] | None = None, *, now: float | None = None,
                   end_time_of: Callable[[str], float | None] = squeue_end_time) -> float | None:
    """Epoch seconds after which this worker leases nothing new, or None for no limit."""
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    margin = _number(env, "WORKER_LEASE_MARGIN_S")
    margin = DEFAULT_MARGIN_S if margin is None else margin
    end = _number(env, "SLURM_JOB_END_TIME")
    if end is None and env.get("SLURM_JOB_ID"):
        end = end_time_of(env["SLURM_JOB_ID"])
    if end is not None:
        return end - margin
    after = _number(env, "WORKER_STOP_LEASING_AFTER_S")
    return None if after is None else now + after
