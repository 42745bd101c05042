"""How many CPU threads a compute job may use on this host, so that concurrent jobs never oversubscribe.

    with claimed_cores() as threads:      # a training, a measurement, an evaluation
        ...                               # run with `threads` torch threads

Torch threads wait for each other at every parallel region: when a run has more threads than free
cores, each step waits for the slowest thread's next time slice, and a run on a busy machine slows
down several times over instead of sharing fairly (2 threads ran 5x slower than 1 on 2 loaded cores).
So a job gets the cores nobody else claimed *and* that are idle now, never fewer than one:

- the cores the process may use: its affinity mask, capped by a cgroup v2 CPU quota (`cpu.max`);
- minus those other live jobs of this host hold in a small ledger file (each claim names its pid, so
  a killed job's claim lapses);
- at most the cores idle over a short sample of `/proc/stat`, which sees load from outside the project.

`TRAINER_THREADS=N` fixes the answer (for benchmarks, or a machine with other rules).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LEDGER = Path(tempfile.gettempdir()) / f"discovery-cores-{os.getuid()}.json"
IDLE_SAMPLE_S = 0.2


def available_cores() -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup CPU quota where one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.floor(quota))) if quota else cores


def _cgroup_quota() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies over all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def idle_cores(sample_s: float = IDLE_SAMPLE_S) -> float | None:
    """Cores idle over SAMPLE_S seconds (None where /proc/stat is unreadable)."""
    try:
        idle0, total0 = _cpu_times()
        time.sleep(sample_s)
        idle1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (idle1 - idle0) / (total1 - total0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _ledger() -> Iterator[dict[str, int]]:
    """The claims of live jobs ({pid: cores}), read and written under an exclusive lock."""
    LEDGER.touch(exist_ok=True)
    with open(LEDGER, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            claims = json.loads(f.read() or "{}")
        except json.JSONDecodeError:
            claims = {}  # a torn write of a crashed job: start afresh
        claims = {pid: n for pid, n in claims.items() if _alive(int(pid))}
        yield claims
        f.seek(0)
        f.truncate()
        f.write(json.dumps(claims))


def fixed_threads() -> int | None:
    value = os.environ.get("TRAINER_THREADS")
    return max(1, int(value)) if value else None


@contextlib.contextmanager
def claimed_cores(wanted: int | None = None) -> Iterator[int]:
    """Claim cores for one compute job for as long as the block runs; yields how many (at least 1)."""
    fixed = fixed_threads()
    if fixed is not None:
        yield fixed
        return
    total = available_cores()
    idle = idle_cores()
    key = str(os.getpid())
    with _ledger() as claims:
        held = claims.get(key, 0)  # a job of this process that already holds cores
        free = total - sum(n for pid, n in claims.items() if pid != key) - held
        cores = min(wanted or total, free, round(idle) if idle is not None else total)
        cores = max(1, cores)
        claims[key] = held + cores
    try:
        yield cores
    finally:
        with _ledger() as claims:
            left = claims.get(key, 0) - cores
            if left > 0:
                claims[key] = left
            else:
                claims.pop(key, None)
