"""Run untrusted programs in a child process with hard limits.

    result = run_sandboxed([sys.executable, "-m", "trainer.train", ...], workdir=..., timeout_s=600,
                           memory_mb=4096)

Layers of containment, from the outside in:
- the child starts a new session (its own process group); on the wall-clock limit, or when a monitor
  sees it exceed its memory or process-count limit, every process of that session gets SIGKILL;
- its environment is rebuilt from scratch: no inherited secrets (API tokens, LLM keys); the parent makes
  itself non-dumpable and the child gives up its capabilities, so /proc/PPID/environ is out of reach too;
- inside, `trainer.sandbox_guard` unshares the network where the kernel allows it, sets address-space,
  CPU-time, file-size and core limits, and installs an audit hook that refuses network use, writes
  outside the working directory, reading other processes' /proc entries, forking and starting programs.
The child writes its answer to WORKDIR/result.json; stdout and stderr go to files there and their
tails come back in the result with a one-line reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAIL_CHARS = 4000
# Variables a child may see from the parent: locale, paths, device selection. Never credentials.
PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_HOME",
                "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


@dataclass
class SandboxResult:
    ok: bool
    returncode: int | None
    reason: str | None
    stdout_tail: str = ""
    stderr_tail: str = ""
    result: dict | None = None
    wall_s: float = 0.0
    peak_memory_mb: float = 0.0
    limits: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def child_env(workdir: Path, extra: dict | None, writable: list[Path]) -> dict:
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(workdir), TMPDIR=str(tmp), PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1",
               PYTHONUNBUFFERED="1", TORCHINDUCTOR_COMPILE_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if writable:
        # Compilation caches survive the child, so a fresh process does not autotune again.
        env.setdefault("TRITON_CACHE_DIR", str(writable[0] / "triton"))
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(writable[0] / "inductor"))
    env.update(extra or {})
    return env


def _protect_from_children() -> None:
    """Make this process non-dumpable: reading its /proc/PID/environ (API tokens, LLM keys) then takes
    capabilities (CAP_SYS_PTRACE and kin) that sandboxed children give up (see sandbox_guard), even for
    a child of the same user reading through ctypes. Linux, best effort."""
    if sys.platform != "linux":
        return
    try:
        import ctypes
        import ctypes.util

        ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


def _session_processes(sid: int) -> list[tuple[int, int]]:
    """(pid, resident kB) of every live process in session `sid` (Linux /proc; empty elsewhere)."""
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # fields[3] is the session id; fields[21] is the resident set in pages.
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append((int(entry.name), int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _kill_session(sid: int) -> None:
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    # Anything that left the process group but not the session goes too.
    for pid, _ in _session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(path: Path) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_CHARS))
        return f.read().decode("utf-8", errors="replace")


def _explain(returncode: int, stderr: str, limits: dict) -> str:
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
    if "PermissionError: sandbox:" in stderr:
        refused = stderr[stderr.rindex("PermissionError: sandbox:") + len("PermissionError: "):].splitlines()[0]
        return f"refused by the sandbox: {refused.removeprefix('sandbox: ')}"
    if "MemoryError" in stderr or "DefaultCPUAllocator: can't allocate memory" in stderr:
        return f"out of memory: the program exceeded its {limits['memory_mb']} MB limit"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and "cpu_s" in limits:
        return f"killed by signal {-returncode} (CPU-time limit {limits['cpu_s']} s?)"
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}: {last[:300]}"


def run_sandboxed(argv: list[str], *, workdir: Path, timeout_s: float, memory_mb: int, env: dict | None = None,
                  cpu_s: int | None = None, max_processes: int = 64, file_mb: int = 4096,
                  writable: list[Path] | None = None, network: bool = False, cuda: bool = False,
                  poll_s: float = 0.2, stop: threading.Event | None = None) -> SandboxResult:
    """Run `argv` (a Python command: [python, -m, module, ...], [python, script, ...] or [python, -c, code]).

    Blocking; call it through `asyncio.to_thread` from async code and set `stop` to kill the child early.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    writable = [Path(p).resolve() for p in writable or []]
    (workdir / "result.json").unlink(missing_ok=True)
    cpu_s = cpu_s or int(timeout_s * (os.cpu_count() or 1)) + 60
    limits = {"timeout_s": timeout_s, "memory_mb": memory_mb, "cpu_s": cpu_s, "max_processes": max_processes}
    environment = child_env(workdir, env, writable)
    # CUDA reserves far more address space than it uses, so GPU children get only the resident-memory monitor.
    environment.update(SANDBOX_MEMORY_MB="0" if cuda else str(memory_mb), SANDBOX_CPU_S=str(cpu_s),
                       SANDBOX_FILE_MB=str(file_mb), SANDBOX_NETWORK="1" if network else "0",
                       SANDBOX_PARENT_PID=str(os.getpid()))
    _protect_from_children()
    command = [sys.executable, "-m", "trainer.sandbox_guard", str(workdir), *map(str, writable), "--", *argv[1:]]
    started = time.monotonic()
    peak_kb, reason = 0, None
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        sid = process.pid
        try:
            while process.poll() is None:
                elapsed = time.monotonic() - started
                members = _session_processes(sid)
                resident_kb = sum(kb for _, kb in members)
                peak_kb = max(peak_kb, resident_kb)
                if elapsed > timeout_s:
                    reason = f"timed out: still running after {timeout_s:.0f} s (wall-clock limit)"
                elif len(members) > max_processes:
                    reason = f"too many processes: {len(members)}, over the limit of {max_processes} (a fork bomb?)"
                elif resident_kb > memory_mb * 1024:
                    reason = f"out of memory: {resident_kb // 1024} MB resident, over the {memory_mb} MB limit"
                elif stop is not None and stop.is_set():
                    reason = "stopped: the job was cancelled"
                if reason:
                    _kill_session(sid)
                    break
                time.sleep(poll_s)
        finally:
            # Whatever happens here (including our own cancellation), nothing of the child survives.
            _kill_session(sid)
            process.wait()
    wall = time.monotonic() - started
    stdout, stderr = _tail(workdir / "stdout.txt"), _tail(workdir / "stderr.txt")
    result = None
    if (workdir / "result.json").exists():
        try:
            result = json.loads((workdir / "result.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            reason = reason or f"the program wrote an unreadable result.json: {exc}"
    ok = reason is None and process.returncode == 0
    if not ok and reason is None:
        reason = _explain(process.returncode, stderr, limits)
    return SandboxResult(ok=ok, returncode=process.returncode, reason=reason, stdout_tail=stdout, stderr_tail=stderr,
                         result=result, wall_s=wall, peak_memory_mb=peak_kb / 1024, limits=limits)
