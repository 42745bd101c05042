"""Runs inside a sandboxed child before the untrusted code: `python -m trainer.sandbox_guard WORKDIR -- ARGS`.

It tightens the process from the inside, while it is still single-threaded: a private network
namespace where the kernel allows one (unless the jail, `trainer.jail`, made one already), resource
limits, no capabilities (even as root), the working directory, and a Python audit hook that refuses
network use, writes outside the working directory (and the caches it is given), reading other
processes' /proc entries (their environment holds secrets), and starting programs other than the
compilers GPU kernels need. Then it runs ARGS (`-m module ...`, `-c code` or a script) as the main
program. Refusals raise PermissionError with a message starting "sandbox:".

The audit hook is only a friendly early error for plain Python: native code (ctypes, C extensions)
never passes through it, so nothing relies on it. The kernel enforces the boundaries: the jail's
namespaces and mounts, the limits set here, and the parent's monitor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import resource
import runpy
import signal
import sys

# Programs a GPU toolchain starts (Triton's compiler and launcher build); nothing else may run.
ALLOWED_EXECUTABLES = {"ptxas", "cuobjdump", "nvdisasm", "nvcc", "gcc", "cc", "g++", "c++", "clang", "ldconfig",
                       "ld", "as"}
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
_PROC_PID = re.compile(r"^/proc/(\d+)(/|$)")


def isolate_network() -> bool:
    """A new, empty network namespace (loopback down): no connection can leave. Best effort."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return False
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    return libc.unshare(flags) == 0


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the worker that started it dies (Linux), so no training outlives it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(137)


def drop_capabilities() -> bool:
    """Give up every capability (a root child keeps its uid and owns what root owns, nothing more).

    With CAP_SYS_PTRACE, CAP_SYS_ADMIN or CAP_PERFMON, root reads any process's /proc/PID/environ,
    even through ctypes, which the audit hook cannot see; without them, processes that made themselves
    non-dumpable (the sandbox's parent does) are out of reach. No new privileges either: a setuid
    program cannot win them back. Linux, best effort; returns whether capset succeeded.
    """

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return False
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for capability in range(64):  # the bounding set first: dropping needs CAP_SETPCAP, still held here
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    return libc.capset(ctypes.byref(header), data) == 0


def in_own_user_namespace() -> bool:
    """Whether this process is in a user namespace other than the initial one (whose map is the identity)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", str(2**32 - 1)]
    except OSError:
        return False


def limit_threads(max_threads: int, worker_uid: int | None) -> None:
    """The kernel's own bound on threads (RLIMIT_NPROC counts every thread and process of the user).

    Only in a user namespace of our own (the jail's, or the one `isolate_network` made), where the count
    is this sandbox's alone: in the initial one it would count every process of the worker's user too.
    And not when the worker runs as root (`worker_uid`, its uid outside: bwrap keeps it): the kernel never
    enforces RLIMIT_NPROC for uid 0, so there the monitor's thread count is the only bound. Set a little
    above the monitor's limit, so that the monitor's reason ("too many threads") is the one reported.
    """
    if not max_threads or worker_uid in (None, 0) or not in_own_user_namespace():
        return
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    limit = max_threads + 16 if hard == resource.RLIM_INFINITY else min(max_threads + 16, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def set_limits(memory_mb: int | None, cpu_s: int | None, file_mb: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    if cpu_s:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    if file_mb:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))


class Guard:
    def __init__(self, writable: list[str]):
        self.writable = [os.path.realpath(p) for p in writable]
        self.pid = str(os.getpid())

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == "/dev/null" or any(real == root or real.startswith(root + os.sep) for root in self.writable)

    def _refuse(self, what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed")

    def __call__(self, event: str, args: tuple) -> None:
        if event.startswith("socket.") and event not in ("socket.__new__", "socket.gethostname"):
            self._refuse("network access")
        elif event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            path = os.fsdecode(path)
            match = _PROC_PID.match(os.path.abspath(path))
            if match and match.group(1) != self.pid:
                self._refuse(f"reading another process's {path}")
            writing = (mode and any(c in mode for c in "wax+")) or (flags and flags & (os.O_WRONLY | os.O_RDWR))
            if writing and not self._inside(path):
                self._refuse(f"writing {path} outside the working directory")
        elif event in ("os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                       "os.symlink", "os.link", "shutil.rmtree", "shutil.move", "shutil.copyfile"):
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
            for path in paths[:2] if event in ("os.rename", "shutil.move", "os.link", "os.symlink") else paths[:1]:
                if not self._inside(os.fsdecode(path)):
                    self._refuse(f"{event} on {os.fsdecode(path)} outside the working directory")
        elif event in ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
                       "os.killpg", "pty.spawn"):
            self._refuse(event)
        elif event == "subprocess.Popen":
            executable = os.path.basename(os.fsdecode(args[0] or (args[1][0] if args[1] else "")))
            if executable not in ALLOWED_EXECUTABLES:
                self._refuse(f"starting {executable!r}")


def loopback_up() -> bool:
    """Bring up `lo` in the network namespace `isolate_network` made (it starts down), while this process
    still holds the capabilities it has over that namespace. Best effort."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
        return True
    except OSError:
        return False


def rank_environment(inherited: dict, *, unshared_here: bool) -> dict:
    """The environment a launcher (torchrun, `trainer.distributed`) passes to the guards of its ranks.

    The launcher is trusted code that runs no candidate code: it keeps no audit hook, since it must start
    the ranks and meet them on loopback. Each rank runs under this guard again, with the same limits. They
    share the launcher's network namespace: unsharing another one each would part them.
    """
    env = dict(inherited)
    if unshared_here:
        env["SANDBOX_NETWORK"] = "1"  # "do not unshare again": the namespace is private already
    if "SANDBOX_PARENT_PID" in inherited:
        env["SANDBOX_PARENT_PID"] = str(os.getpid())  # ranks die with the launcher, as it dies with the worker
    return env


def main(argv: list[str]) -> None:
    if "--" not in argv or len(argv) < 3:
        raise SystemExit("usage: python -m trainer.sandbox_guard WORKDIR [WRITABLE...] -- ARGS")
    split = argv.index("--")
    workdir, writable, target = argv[0], argv[1:split], argv[split + 1:]
    launcher = os.environ.pop("SANDBOX_LAUNCHER", "0") == "1"
    # Read before they are consumed below: a launcher hands the same limits to the guards of its ranks.
    inherited = {k: v for k, v in os.environ.items() if k.startswith("SANDBOX_")}
    # In the jail, bwrap's --die-with-parent does this (and the parent is outside our PID namespace).
    if sys.platform == "linux" and os.environ.get("SANDBOX_PARENT_PID"):
        die_with_parent(int(os.environ.pop("SANDBOX_PARENT_PID")))
    network = os.environ.pop("SANDBOX_NETWORK", "0") == "1"
    jailed = os.environ.pop("SANDBOX_JAILED", "0") == "1"  # the jail unshared the network unless asked not to
    limits = [int(os.environ.pop(name, "0") or 0) for name in ("SANDBOX_MEMORY_MB", "SANDBOX_CPU_S", "SANDBOX_FILE_MB")]
    max_threads = int(os.environ.pop("SANDBOX_MAX_THREADS", "0") or 0)
    worker_uid = os.environ.pop("SANDBOX_WORKER_UID", "")
    isolated = network or jailed or isolate_network()
    unshared_here = isolated and not (network or jailed)
    if launcher and unshared_here:
        loopback_up()  # the ranks meet on loopback; the jail's has it up already, a fresh namespace's is down
    set_limits(*limits)
    if sys.platform == "linux":
        limit_threads(max_threads, int(worker_uid) if worker_uid.isdigit() else None)
        drop_capabilities()  # after the limits: lowering a hard limit is allowed, raising one would not be
    os.chdir(workdir)
    os.environ["SANDBOX_NETWORK_ISOLATED"] = "1" if isolated else "0"
    if launcher:
        os.environ.update(rank_environment(inherited, unshared_here=unshared_here))
    else:
        sys.addaudithook(Guard([workdir, *writable]))
    if target[0] == "-m":
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    elif target[0] == "-c":
        sys.argv = ["-c", *target[2:]]
        exec(compile(target[1], "<sandboxed>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = target
        runpy.run_path(target[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
