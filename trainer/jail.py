"""The kernel-enforced view an untrusted child runs in: bubblewrap namespaces and bind mounts.

    command = [*bwrap_prefix(workdir, writable=[workdir], readable=[cache], cuda=False, network=False),
               "--", sys.executable, "-m", "trainer.sandbox_guard", ...]

Inside, the child has its own user, PID, IPC, UTS, cgroup and (unless asked otherwise) network
namespaces, no capabilities, and a filesystem made only of: /usr and the /bin, /lib... links, a few
files of /etc (never all of it: /etc/shadow), the Python installation and the virtual environment
(read-only, so no `.pth` file can be planted), the project's code packages (not the project root:
runs/, .env, tests/ and the database do not exist there), the paths it was given to read (read-only)
and to write, a fresh /proc, a minimal /dev and small private tmpfs for /tmp and /dev/shm.
Everything else of the host is absent, whatever the child does from native code.

Policy, from the environment variable SANDBOX_ISOLATION:
    auto (default), kernel   the jail is required; without it `SandboxUnavailable` says what is missing
    weak                     run without the jail (opt-in; one warning per process names what is off)
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The packages a child imports; the rest of the project root (runs/, .env, tests/) stays out of view.
CODE_PACKAGES = ("trainer", "agent", "evaluator", "database")
# What programs need from /etc: the dynamic loader's cache, user names, time zone, name resolution.
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
               "hosts", "alternatives")
TOP_LEVEL_LINKS = ("bin", "lib", "lib64", "sbin")
NVIDIA_DEVICES = (*(f"/dev/nvidia{i}" for i in range(16)), "/dev/nvidiactl", "/dev/nvidia-uvm",
                  "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia-caps")
# /tmp and /dev/shm are tmpfs, that is memory the resident-memory monitor does not see: keep them small
# (bwrap 0.7 and later; an older one leaves them unbounded).
TMPFS_MB = 128
PROBE_TIMEOUT_S = 10
POLICIES = ("auto", "kernel", "weak")
PROTECTIONS_OFF = ("the private filesystem view (the program can read .env, the database and every file "
                   "the worker can, and native code can write wherever the worker can), the PID and IPC "
                   "namespaces (it sees and can signal the worker's other processes), the kernel-enforced "
                   "network namespace (the guard still unshares one where the kernel lets it), the private "
                   "/tmp, and the ban on user namespaces inside the sandbox; what remains is the resource "
                   "limits, the monitor, the scrubbed environment, the dropped capabilities and a Python audit "
                   "hook that native code (ctypes) walks around")

log = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """The kernel jail is required (SANDBOX_ISOLATION=auto or kernel) but cannot start here."""


@dataclass(frozen=True)
class JailStatus:
    available: bool
    reason: str = ""  # why not, in words; empty when available
    bwrap: str | None = None
    options: frozenset = field(default_factory=frozenset)  # optional bwrap flags that work here


def _system_view() -> list[str]:
    """Read-only /usr, the top-level links into it as the host has them, and a minimal /etc."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in TOP_LEVEL_LINKS:
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_ENTRIES:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def _namespaces(network: bool) -> list[str]:
    args = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return args if network else [*args, "--unshare-net"]


def _userns_settings() -> str:
    """The kernel settings that decide whether a user namespace may be created, with their values."""
    settings = []
    for path in ("/proc/sys/kernel/unprivileged_userns_clone", "/proc/sys/user/max_user_namespaces",
                 "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"):
        try:
            settings.append(f"{path} = {Path(path).read_text().strip()}")
        except OSError:
            continue
    return "; ".join(settings) or "no user-namespace settings readable under /proc/sys"


def _run(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _optional_flags(bwrap: str) -> frozenset:
    """Flags newer bwraps have (0.8: --disable-userns; 0.7: --size), kept only where they work here."""
    listed = (_run([bwrap, "--help"]) or subprocess.CompletedProcess([], 1, "", "")).stdout
    working = set()
    trials = {"--disable-userns": ["--disable-userns"], "--size": ["--size", "1048576", "--tmpfs", "/tmp"]}
    for flag, extra in trials.items():
        done = flag in listed and _run([bwrap, *_namespaces(False), *_system_view(), *extra, "true"])
        if done and done.returncode == 0:
            working.add(flag)
    return frozenset(working)


@functools.lru_cache(maxsize=1)
def probe() -> JailStatus:
    """Whether bwrap is installed and the kernel lets it build a jail here (tried once, then cached)."""
    # Services may run with a bare PATH; Debian's package installs it here.
    bwrap = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)
    if bwrap is None:
        return JailStatus(False, "bubblewrap is not installed (apt-get install bubblewrap)")
    # The same mounts a sandbox needs: a container may allow the namespaces yet refuse a fresh /proc.
    trial = _run([bwrap, *_namespaces(False), "--die-with-parent", *_system_view(), "--proc", "/proc",
                  "--dev", "/dev", "--tmpfs", "/tmp", "true"])
    if trial is None:
        return JailStatus(False, f"{bwrap} did not answer within {PROBE_TIMEOUT_S} s", bwrap)
    if trial.returncode != 0:
        said = " ".join(trial.stderr.split())[:500] or f"exit status {trial.returncode}"
        return JailStatus(False, f"the kernel refused bwrap its namespaces (user namespaces: {_userns_settings()}; "
                                 f"a container's seccomp or AppArmor profile can refuse them too); bwrap said: "
                                 f"{said}", bwrap)
    return JailStatus(True, "", bwrap, _optional_flags(bwrap))


def _policy() -> str:
    policy = os.environ.get("SANDBOX_ISOLATION", "auto").strip().lower() or "auto"
    if policy not in POLICIES:
        raise ValueError(f"SANDBOX_ISOLATION={policy!r}: expected one of {', '.join(POLICIES)}")
    return policy


@functools.lru_cache(maxsize=1)
def _warn_weak() -> None:
    """Once per process: a weak sandbox is a deliberate choice, but nobody should forget it was made."""
    log.warning("SANDBOX_ISOLATION=weak: untrusted programs run without the kernel jail; off: %s.", PROTECTIONS_OFF)


def isolation() -> str:
    """What the next sandbox gets, "kernel" or "weak". Raises SandboxUnavailable when the jail is
    required and missing, so that nothing untrusted runs with less protection than configured."""
    if _policy() == "weak":
        _warn_weak()
        return "weak"
    status = probe()
    if not status.available:
        raise SandboxUnavailable(
            f"The sandbox for untrusted programs needs a kernel jail, and it cannot start here: {status.reason}. "
            f"Without it these protections would be off: {PROTECTIONS_OFF}. To run anyway with only those that "
            "remain, set SANDBOX_ISOLATION=weak.")
    return "kernel"


def _python_and_code() -> list[Path]:
    """The interpreter's installation, the virtual environment and the project's code packages."""
    usr = Path("/usr")  # already in view
    pythons = [p for p in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()} if usr not in (p, *p.parents)]
    return pythons + [ROOT / name for name in CODE_PACKAGES if (ROOT / name).is_dir()]


def _user_binds(writable: list[Path], readable: list[Path]) -> list[str]:
    """Binds at the same paths, parents before children so a nested path keeps its own mode; a path
    both readable and writable is writable."""
    modes = {path: False for path in _python_and_code()}
    modes.update({Path(p).resolve(): False for p in readable})
    modes.update({Path(p).resolve(): True for p in writable})
    args = []
    for path in sorted(modes, key=lambda p: (len(p.parts), str(p))):
        if path == Path("/"):
            raise ValueError("the sandbox cannot be given the whole filesystem")
        args += ["--bind" if modes[path] else "--ro-bind-try", str(path), str(path)]
    return args


def _cuda_binds() -> list[str]:
    """The NVIDIA device nodes and what the driver library reads (driver version, PCI topology)."""
    args = []
    for device in NVIDIA_DEVICES:
        args += ["--dev-bind-try", device, device]
    args += ["--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia", "--ro-bind-try", "/sys", "/sys"]
    if os.environ.get("CUDA_HOME"):
        home = str(Path(os.environ["CUDA_HOME"]).resolve())
        args += ["--ro-bind-try", home, home]
    return args


def _tmpfs(path: str, options: frozenset) -> list[str]:
    size = ["--size", str(TMPFS_MB * 2**20)] if "--size" in options else []
    return [*size, "--tmpfs", path]


def bwrap_prefix(workdir, *, writable=(), readable=(), cuda: bool = False, network: bool = False) -> list[str]:
    """The argv before `-- COMMAND` that runs COMMAND in the jail, in `workdir` (always writable)."""
    status = probe()
    workdir = Path(workdir).resolve()
    args = [status.bwrap or "bwrap", *_namespaces(network), "--die-with-parent", "--hostname", "sandbox",
            "--cap-drop", "ALL"]
    # No user namespaces inside: they would give the program capabilities again (over its own namespaces
    # only) and open the kernel's largest attack surface for unprivileged code.
    if "--disable-userns" in status.options:
        args.append("--disable-userns")
    args += _system_view()
    args += ["--proc", "/proc", "--dev", "/dev", *_tmpfs("/dev/shm", status.options), *_tmpfs("/tmp", status.options)]
    args += _user_binds([workdir, *writable], list(readable))
    if cuda:
        args += _cuda_binds()
    # Last, once every mount point exists: the skeleton bwrap built (/, /etc, /dev) becomes read-only too.
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", str(workdir)]
    return args
