"""Run untrusted programs in a child process with hard limits.

    result = run_sandboxed([sys.executable, "-m", "trainer.train", ...], workdir=..., timeout_s=600, memory_mb=4096)
    sandbox = spawn_sandboxed([sys.executable, "-m", "a.server"], ..., pipes=True)  # requests on process.stdin,
    ...                                         # answers on process.stdout (EOF once killed: broken_limit() says why)
    result = sandbox.close()

Layers of containment, from the outside in:
- the kernel jail (`trainer.jail`): own namespaces, no capabilities, a filesystem of only the system, Python,
  the project's code packages and the paths the caller names; without it the sandbox refuses to start, unless
  SANDBOX_ISOLATION=weak;
- a new session, and a monitor thread in the parent that kills every process of the sandbox on the wall-clock
  limit, too much resident memory, too many processes or threads, or too many bytes written under the writable
  paths; output relays kill it when stdout or stderr passes its limit. Each is a one-line reason, never a hang;
- an environment rebuilt from scratch (no API tokens or LLM keys), and a non-dumpable parent;
- inside, `trainer.sandbox_guard`: address-space, CPU-time, file-size, thread and core limits, no capabilities,
  and an audit hook that turns plain-Python attempts into friendly errors (nothing relies on it).
The child writes its answer to WORKDIR/result.json; stdout and stderr go to files there, and their tails come
back in the result.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainer import jail
from trainer.processes import disk_usage, kill_session, running, sandbox_processes

ROOT = Path(__file__).resolve().parents[1]
TAIL_CHARS = 4000
# Variables a child may see from the parent: locale, paths, device selection. Never credentials.
PASS_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_HOME",
                "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS", "GPU_MEMORY_FRACTION")
# Walking the writable paths costs a little, so disk usage is measured less often than memory.
DISK_CHECK_S = 2.0
WALL_CLOCK = "timed out"  # how a broken wall-clock limit's reason begins
# In the jail the session also holds bwrap itself and the PID namespace's init: not the program's.
JAIL_HELPERS = 2
# How long close() lets a program on pipes end by itself once its stdin is closed, before killing it.
CLOSE_GRACE_S = 2.0


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
    isolation: str = ""  # "kernel" (the jail) or "weak" (SANDBOX_ISOLATION=weak)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def timed_out(self) -> bool:
        """Only the wall-clock backstop broke: a busy machine, not a program that spent its CPU time."""
        return bool(self.reason and self.reason.startswith(WALL_CLOCK))


class MachineBusy(RuntimeError):
    """Untrusted work ran past its wall-clock backstop before using up its CPU time: the job is retried."""


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


def _close_quietly(*streams) -> None:
    for stream in filter(None, streams):
        with contextlib.suppress(OSError):  # a write still buffered for a program that is gone
            stream.close()


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
    # A signal's death reads -N from a plain child, and 128+N through the jail's init, as a shell reports it.
    signum = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 128 + signal.NSIG else None
    if signum in (signal.SIGXCPU, signal.SIGKILL) and "cpu_s" in limits:
        return (f"CPU-time limit: killed by signal {signal.Signals(signum).name} after using its "
                f"{limits['cpu_s']} CPU-seconds (or killed from outside)")
    if signum is not None:
        return f"killed by signal {signal.Signals(signum).name}"
    return f"exited with status {returncode}: {last[:300]}"


class SandboxedProcess:
    """A running sandbox. `process` is the Popen of its outermost process; with pipes=True its stdin and
    stdout are binary pipes to the program, otherwise stdout goes to WORKDIR/stdout.txt. stderr always
    goes to WORKDIR/stderr.txt. A monitor thread enforces the limits until the program exits or `close()`
    is called; when it kills the sandbox, reads from stdout hit EOF and `broken_limit()` says why.
    """

    def __init__(self, process: subprocess.Popen, workdir: Path, limits: dict, *, isolation: str,
                 watched: list[Path], sinks: dict, stop: threading.Event | None, poll_s: float):
        self.process, self.workdir, self.limits, self.isolation = process, workdir, limits, isolation
        self._helpers = JAIL_HELPERS if isolation == "kernel" else 0
        self._watched, self._disk_base = watched, disk_usage(watched)
        self._stop, self._poll_s = stop, poll_s
        self._started = time.monotonic()
        self._closing, self._lock = threading.Event(), threading.Lock()
        self._reason, self._peak_kb, self._result = None, 0, None
        self._threads = [threading.Thread(target=self._monitor, name="sandbox-monitor", daemon=True)]
        for name, sink in sinks.items():
            source = process.stdout if name == "stdout" else process.stderr
            self._threads.append(threading.Thread(target=self._relay, args=(name, source, sink), daemon=True))
        for thread in self._threads:
            thread.start()

    def wait(self) -> None:
        """Block until the program ends by itself or the monitor has killed it for a limit."""
        self._threads[0].join()

    def broken_limit(self) -> str | None:
        """Why the monitor killed the sandbox (a limit, or the stop event), or None while it has not."""
        return self._reason

    def close(self) -> SandboxResult:
        """Kill every process of the sandbox, wait for them, and collect the tails and result.json."""
        if self._result is not None:
            return self._result
        if self.process.stdin is not None:  # a server ends on EOF: give it a moment to do so
            _close_quietly(self.process.stdin)
            deadline = time.monotonic() + CLOSE_GRACE_S
            while running(self.process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        closed_early = running(self.process.pid)
        self._closing.set()
        try:
            kill_session(self.process.pid)
        finally:
            self.process.wait()
        deadline = time.monotonic() + 5  # killed processes take a moment to go: none is left when this returns
        while sandbox_processes(self.process.pid) and time.monotonic() < deadline:
            kill_session(self.process.pid)
            time.sleep(0.01)
        for thread in self._threads:
            thread.join(timeout=5)
        _close_quietly(self.process.stdin, self.process.stdout, self.process.stderr)
        self._result = self._collect("stopped: closed by its caller while still running" if closed_early else None)
        return self._result

    def _break(self, reason: str) -> None:
        """Record the first reason and kill the sandbox (not once it is reaped: its id may be reused)."""
        with self._lock:
            self._reason = self._reason or reason
        if self.process.returncode is None:
            kill_session(self.process.pid)

    def _monitor(self) -> None:
        next_disk = time.monotonic() + DISK_CHECK_S
        while not self._closing.is_set() and running(self.process.pid):
            reason = self._check()
            if reason is None and time.monotonic() >= next_disk:
                reason, next_disk = self._check_disk(), time.monotonic() + DISK_CHECK_S
            if reason:
                self._break(reason)
                return
            self._closing.wait(self._poll_s)

    def _check(self) -> str | None:
        members, limits = sandbox_processes(self.process.pid), self.limits
        processes = max(0, len(members) - self._helpers)
        threads = max(0, sum(p.threads for p in members) - self._helpers)
        resident_kb = sum(p.resident_kb for p in members)
        self._peak_kb = max(self._peak_kb, resident_kb)
        if time.monotonic() - self._started > limits["timeout_s"]:
            return f"{WALL_CLOCK}: still running after {limits['timeout_s']:.0f} s (wall-clock limit)"
        if processes > limits["max_processes"]:
            return f"too many processes: {processes}, over the limit of {limits['max_processes']} (a fork bomb?)"
        if threads > limits["max_threads"]:
            return f"too many threads: {threads}, over the limit of {limits['max_threads']}"
        if resident_kb > limits["memory_mb"] * 1024:
            return f"out of memory: {resident_kb // 1024} MB resident, over the {limits['memory_mb']} MB limit"
        if self._stop is not None and self._stop.is_set():
            return "stopped: the job was cancelled"
        return None

    def _check_disk(self) -> str | None:
        grown_mb = (disk_usage(self._watched) - self._disk_base) / 2**20
        if grown_mb > self.limits["disk_mb"]:
            return (f"disk limit: {grown_mb:.0f} MB written under the writable paths, over the "
                    f"{self.limits['disk_mb']} MB limit")
        return None

    def _relay(self, name: str, source, sink) -> None:
        """Copy the program's `name` stream to its file, up to the output limit. The program blocks on
        a full pipe, so it cannot write faster than this bound is checked."""
        limit, written = self.limits["output_mb"] * 2**20, 0
        with sink, contextlib.suppress(OSError, ValueError):  # the pipe closed under it: nothing more to copy
            while chunk := os.read(source.fileno(), 1 << 16):
                if written < limit:
                    sink.write(chunk[:limit - written])
                written += len(chunk)
                if written > limit and self._reason is None:
                    self._break(f"too much output: more than {self.limits['output_mb']} MB on {name}")

    def _collect(self, closed: str | None) -> SandboxResult:
        returncode, workdir = self.process.returncode, self.workdir
        stdout, stderr = _tail(workdir / "stdout.txt"), _tail(workdir / "stderr.txt")
        reason = self._reason or closed or self._check_disk()  # a burst written just before exiting counts too
        result = None
        if (workdir / "result.json").exists():
            try:
                result = json.loads((workdir / "result.json").read_text())
            except (OSError, json.JSONDecodeError) as exc:
                reason = reason or f"the program wrote an unreadable result.json: {exc}"
        ok = reason is None and returncode == 0
        if not ok and reason is None:
            reason = _explain(returncode, stderr, self.limits)
        return SandboxResult(ok=ok, returncode=returncode, reason=reason, stdout_tail=stdout, stderr_tail=stderr,
                             result=result, wall_s=time.monotonic() - self._started,
                             peak_memory_mb=self._peak_kb / 1024, limits=self.limits, isolation=self.isolation)


def _child(argv: list[str], workdir: Path, env: dict | None, writable: list[Path], readable: list[Path],
           limits: dict, *, network: bool, cuda: bool, isolation: str) -> tuple[list[str], dict]:
    """The command line and environment of the sandbox's outermost process."""
    environment = child_env(workdir, env, writable)
    # CUDA reserves far more address space than it uses, so GPU children get only the resident-memory monitor.
    environment.update(SANDBOX_MEMORY_MB="0" if cuda else str(limits["memory_mb"]), SANDBOX_CPU_S=str(limits["cpu_s"]),
                       SANDBOX_FILE_MB=str(limits["file_mb"]), SANDBOX_NETWORK="1" if network else "0",
                       SANDBOX_MAX_THREADS=str(limits["max_threads"]), SANDBOX_WORKER_UID=str(os.getuid()))
    command = [sys.executable, "-m", "trainer.sandbox_guard", str(workdir), *map(str, writable), "--", *argv[1:]]
    if isolation != "kernel":
        return command, {**environment, "SANDBOX_PARENT_PID": str(os.getpid())}
    # bwrap dies with this process itself, and this pid does not exist in its PID namespace.
    prefix = jail.bwrap_prefix(workdir, writable=writable, readable=readable, cuda=cuda, network=network)
    return [*prefix, "--", *command], {**environment, "SANDBOX_JAILED": "1"}


def spawn_sandboxed(argv: list[str], *, workdir: Path, timeout_s: float, memory_mb: int, env: dict | None = None,
                    cpu_s: int | None = None, max_processes: int = 64, max_threads: int = 256, file_mb: int = 4096,
                    disk_mb: int | None = None, output_mb: int = 16, writable: list[Path] | None = None,
                    readable: list[Path] | None = None, network: bool = False, cuda: bool = False,
                    pipes: bool = False, stop: threading.Event | None = None, poll_s: float = 0.2) -> SandboxedProcess:
    """Start `argv` (a Python command: [python, -m, module, ...], [python, script, ...] or [python, -c, code])
    in the sandbox and return at once; the caller must `close()` it. `disk_mb` bounds the growth of the writable
    paths (the working directory included); by default twice `file_mb`: one largest file and as much again.
    Raises jail.SandboxUnavailable when the kernel jail is required and missing."""
    isolation = jail.isolation()  # before anything exists: a refused sandbox leaves nothing behind
    workdir = Path(workdir).resolve()
    writable = [Path(p).resolve() for p in writable or []]
    for path in [workdir, *writable]:  # the jail binds them, so they must exist
        path.mkdir(parents=True, exist_ok=True)
    (workdir / "result.json").unlink(missing_ok=True)
    (workdir / "stdout.txt").unlink(missing_ok=True)  # with pipes, no stale one is read back
    cpu_s = cpu_s or int(timeout_s * (os.cpu_count() or 1)) + 60
    limits = {"timeout_s": timeout_s, "memory_mb": memory_mb, "cpu_s": cpu_s, "max_processes": max_processes,
              "max_threads": max_threads, "file_mb": file_mb, "disk_mb": disk_mb or 2 * file_mb, "output_mb": output_mb}
    command, environment = _child(argv, workdir, env, writable, [Path(p).resolve() for p in readable or []], limits,
                                  network=network, cuda=cuda, isolation=isolation)
    _protect_from_children()
    sinks = {name: open(workdir / f"{name}.txt", "wb", buffering=0) for name in ["stderr"] + ["stdout"] * (not pipes)}
    try:
        process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=subprocess.PIPE,
                                   stdin=subprocess.PIPE if pipes else subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
    except BaseException:
        _close_quietly(*sinks.values())
        raise
    return SandboxedProcess(process, workdir, limits, isolation=isolation, watched=[workdir, *writable], sinks=sinks,
                            stop=stop, poll_s=poll_s)


def run_sandboxed(argv: list[str], *, workdir: Path, timeout_s: float, memory_mb: int, env: dict | None = None,
                  cpu_s: int | None = None, max_processes: int = 64, file_mb: int = 4096,
                  writable: list[Path] | None = None, network: bool = False, cuda: bool = False,
                  poll_s: float = 0.2, stop: threading.Event | None = None, max_threads: int = 256,
                  disk_mb: int | None = None, output_mb: int = 16, readable: list[Path] | None = None) -> SandboxResult:
    """Run `argv` in the sandbox to its end (see `spawn_sandboxed`) and return what happened. Blocking; call
    it through `asyncio.to_thread` from async code and set `stop` to kill the child early."""
    sandbox = spawn_sandboxed(argv, workdir=workdir, timeout_s=timeout_s, memory_mb=memory_mb, env=env, cpu_s=cpu_s,
                              max_processes=max_processes, max_threads=max_threads, file_mb=file_mb, disk_mb=disk_mb,
                              output_mb=output_mb, writable=writable, readable=readable, network=network, cuda=cuda,
                              stop=stop, poll_s=poll_s)
    try:
        sandbox.wait()
    finally:
        # Whatever happens here (including our own cancellation), nothing of the child survives.
        result = sandbox.close()
    return result
