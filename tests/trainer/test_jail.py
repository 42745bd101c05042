"""The kernel jail holds where the audit hook does not: every hostile program here goes through libc
(ctypes) or a shell, which the hook never sees, so each test fails if the jail is taken away.
The new limits (threads, disk, output) end in a one-line reason, never a hang.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainer import jail
from trainer.jail import JailStatus, SandboxUnavailable
from trainer.processes import session_processes
from trainer.sandbox import run_sandboxed, spawn_sandboxed

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the jail is Linux namespaces"),
    pytest.mark.skipif(sys.platform == "linux" and not jail.probe().available,
                       reason=f"the kernel jail is unavailable here: {jail.probe().reason}"),
]


@pytest.fixture(autouse=True)
def kernel_isolation(monkeypatch):
    monkeypatch.delenv("SANDBOX_ISOLATION", raising=False)


def jailed(code: str, workdir: Path, **limits):
    limits = {"timeout_s": 30, "memory_mb": 2000, **limits}
    result = run_sandboxed([sys.executable, "-c", textwrap.dedent(code)], workdir=workdir, **limits)
    assert result.isolation == "kernel"
    return result


def test_the_project_root_shows_its_code_packages_only(tmp_path):
    env_file, runs = ROOT / ".env", ROOT / "runs"
    planted = not env_file.exists()
    if planted:  # never touch a real one
        env_file.write_text("API_TOKEN=s3cret\n")
    runs_planted = not runs.exists()
    runs.mkdir(exist_ok=True)
    try:
        result = jailed(f"""
            import json, os
            root = {str(ROOT)!r}
            json.dump({{"listing": sorted(os.listdir(root)),
                        "env": os.path.exists(root + "/.env"), "runs": os.path.exists(root + "/runs"),
                        "tests": os.path.exists(root + "/tests")}}, open("result.json", "w"))
        """, tmp_path)
    finally:
        if planted:
            env_file.unlink()
        if runs_planted:
            runs.rmdir()
    assert result.ok, result.stderr_tail
    assert result.result["env"] is False and result.result["runs"] is False and result.result["tests"] is False
    assert "trainer" in result.result["listing"]


def test_a_secret_outside_the_view_does_not_exist(tmp_path):
    secret = tmp_path / "secret" / "token.txt"
    secret.parent.mkdir()
    secret.write_text("s3cret")
    result = jailed(f"""
        import json, os
        json.dump({{"exists": os.path.exists({str(secret)!r}),
                    "parent": os.listdir({str(tmp_path)!r})}}, open("result.json", "w"))
    """, tmp_path / "work")
    assert result.ok, result.stderr_tail
    assert result.result == {"exists": False, "parent": ["work"]}


def test_a_shell_started_through_libc_writes_nothing_on_the_host(tmp_path):
    outside, in_project = tmp_path / "outside.txt", ROOT / "escaped-from-the-sandbox.txt"
    try:
        result = jailed(f"""
            import ctypes, json
            libc = ctypes.CDLL(None)
            codes = [libc.system(f"echo escaped > {{path}}".encode()) for path in ({str(outside)!r}, {str(in_project)!r})]
            json.dump({{"codes": codes}}, open("result.json", "w"))
        """, tmp_path / "work")
        assert result.ok, result.stderr_tail
        # The shell ran (so the jail, not a missing /bin/sh, stopped it): writing to the project failed.
        assert result.result["codes"][1] != 0
        assert not outside.exists() and not in_project.exists()
    finally:
        in_project.unlink(missing_ok=True)


def test_the_virtual_environment_is_read_only(tmp_path):
    import sysconfig

    planted = Path(sysconfig.get_paths()["purelib"]) / "planted-by-the-sandbox.pth"
    try:
        result = jailed(f"""
            import ctypes, json, os
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.open({str(planted).encode()!r}, os.O_WRONLY | os.O_CREAT, 0o644)
            json.dump({{"fd": fd, "errno": ctypes.get_errno()}}, open("result.json", "w"))
        """, tmp_path)
        assert result.ok, result.stderr_tail
        assert result.result == {"fd": -1, "errno": errno.EROFS}
        assert not planted.exists()
    finally:
        planted.unlink(missing_ok=True)


def test_the_network_is_only_the_sandboxs_own_loopback(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        result = jailed(f"""
            import ctypes, json, socket, struct
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
            address = struct.pack("=HH4s8x", socket.AF_INET, socket.htons({port}), socket.inet_aton("127.0.0.1"))
            connect = libc.connect(fd, address, len(address))
            interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]]
            json.dump({{"connect": connect, "interfaces": interfaces, "hostname": socket.gethostname()}},
                      open("result.json", "w"))
        """, tmp_path)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert result.ok, result.stderr_tail
    # Only the namespace's own loopback (bwrap brings it up: the program may talk to itself, no further). The
    # hostname is the jail's own UTS namespace: the network namespace came with it, not from the guard.
    assert result.result == {"connect": -1, "interfaces": ["lo"], "hostname": "sandbox"}


def test_the_worker_and_its_processes_are_out_of_sight(tmp_path):
    result = jailed(f"""
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        kill = libc.kill({os.getpid()}, 0)
        json.dump({{"kill": kill, "errno": ctypes.get_errno(),
                    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}}, open("result.json", "w"))
    """, tmp_path)
    assert result.ok, result.stderr_tail
    # Only the namespace's init (bwrap) and the program itself.
    assert result.result == {"kill": -1, "errno": errno.ESRCH, "pids": [1, 2]}


def test_the_monitor_finds_every_process_inside_the_pid_namespace(tmp_path):
    sandbox = spawn_sandboxed([sys.executable, "-c", textwrap.dedent("""
        import ctypes, os, time
        child = ctypes.CDLL(None).fork()
        if child > 0:
            open("child", "w").write(str(child))
        time.sleep(30)
    """)], workdir=tmp_path, timeout_s=30, memory_mb=2000)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "child").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        members = session_processes(sandbox.process.pid)
        inside = []
        for pid, _ in members:
            status = Path(f"/proc/{pid}/status").read_text()
            ids = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[1:]
            inside += [int(ids[-1])] if len(ids) > 1 else []  # its pid inside the namespace
        # bwrap outside; inside, its init (1), the program (2) and the child the program forked through libc.
        assert len(members) == 4
        assert sorted(inside) == [1, 2, int((tmp_path / "child").read_text())]
    finally:
        result = sandbox.close()
    assert result.reason == "stopped: closed by its caller while still running"
    assert session_processes(sandbox.process.pid) == []


def test_too_many_threads_are_killed(tmp_path):
    result = jailed("""
        import threading, time
        started = []
        try:
            for _ in range(500):
                thread = threading.Thread(target=time.sleep, args=(60,), daemon=True)
                thread.start()
                started.append(thread)
        except RuntimeError:  # where the kernel's own bound (RLIMIT_NPROC) stops it first
            pass
        time.sleep(60)
    """, tmp_path, max_threads=64)
    assert not result.ok
    assert result.reason.startswith("too many threads: ") and result.reason.endswith("over the limit of 64")
    assert result.wall_s < 20


def test_filling_the_disk_is_killed_and_tmp_is_small(tmp_path):
    result = jailed("""
        import ctypes, json, os, time
        libc = ctypes.CDLL(None, use_errno=True)
        block = b"x" * 2**20
        # The jail's /tmp is a small tmpfs, not the host's disk.
        fd = libc.open(b"/tmp/fill", os.O_WRONLY | os.O_CREAT, 0o644)
        written = [libc.write(fd, block, len(block)) for _ in range(200)]
        json.dump({"tmp_mb": sum(n for n in written if n > 0) // 2**20, "errno": ctypes.get_errno()},
                  open("result.json", "w"))
        with open("big", "wb") as f:
            for _ in range(200):
                f.write(block)
        time.sleep(60)
    """, tmp_path, disk_mb=50)
    assert result.result == {"tmp_mb": jail.TMPFS_MB, "errno": errno.ENOSPC}
    assert result.reason.startswith("disk limit: ") and result.reason.endswith("over the 50 MB limit")
    assert result.wall_s < 20


def test_too_much_output_is_killed_and_the_file_stays_bounded(tmp_path):
    result = jailed("""
        import sys, time
        line = "y" * 1023 + "\\n"
        for _ in range(50 * 1024):
            sys.stdout.write(line)
        time.sleep(60)
    """, tmp_path, output_mb=5)
    assert result.reason == "too much output: more than 5 MB on stdout"
    assert (tmp_path / "stdout.txt").stat().st_size == 5 * 2**20
    assert result.wall_s < 20


ECHO = """
    import sys, threading, time
    for line in sys.stdin:
        if line.strip() == "threads":
            for _ in range(100):
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        sys.stdout.write(line.upper())
        sys.stdout.flush()
"""


def test_pipes_carry_requests_and_a_broken_limit_reads_as_eof(tmp_path):
    sandbox = spawn_sandboxed([sys.executable, "-c", textwrap.dedent(ECHO)], workdir=tmp_path, timeout_s=30,
                              memory_mb=2000, max_threads=32, pipes=True)
    try:
        sandbox.process.stdin.write(b"hello\n")
        sandbox.process.stdin.flush()
        assert sandbox.process.stdout.readline() == b"HELLO\n" and sandbox.broken_limit() is None
        sandbox.process.stdin.write(b"threads\n")
        sandbox.process.stdin.flush()
        assert sandbox.process.stdout.read() in (b"", b"THREADS\n")  # EOF once the monitor killed it
        reason = sandbox.broken_limit()
        assert reason.startswith("too many threads: ") and reason.endswith(", over the limit of 32")
    finally:
        result = sandbox.close()
    assert not result.ok and result.reason == sandbox.broken_limit()


def test_a_program_on_pipes_that_ends_at_eof_closes_cleanly(tmp_path):
    sandbox = spawn_sandboxed([sys.executable, "-c", textwrap.dedent(ECHO)], workdir=tmp_path, timeout_s=30,
                              memory_mb=2000, pipes=True)
    sandbox.process.stdin.write(b"one\n")
    sandbox.process.stdin.flush()
    assert sandbox.process.stdout.readline() == b"ONE\n"
    result = sandbox.close()  # closes stdin: the program ends by itself, not killed
    assert result.ok and result.returncode == 0 and result.reason is None


def test_without_the_jail_the_sandbox_refuses_unless_weak_is_chosen(tmp_path, monkeypatch):
    missing = JailStatus(False, "bubblewrap is not installed (apt-get install bubblewrap)")
    monkeypatch.setattr(jail, "probe", lambda: missing)
    code = "import json; json.dump({'ran': True}, open('result.json', 'w'))"
    with pytest.raises(SandboxUnavailable) as refused:
        run_sandboxed([sys.executable, "-c", code], workdir=tmp_path / "auto", timeout_s=20, memory_mb=2000)
    message = str(refused.value)
    assert "bubblewrap is not installed" in message and "SANDBOX_ISOLATION=weak" in message
    assert "filesystem view" in message and "PID and IPC namespaces" in message
    assert not (tmp_path / "auto").exists()
    monkeypatch.setenv("SANDBOX_ISOLATION", "weak")
    result = run_sandboxed([sys.executable, "-c", code], workdir=tmp_path / "weak", timeout_s=20, memory_mb=2000)
    assert result.ok and result.result == {"ran": True} and result.isolation == "weak"


def test_a_refused_user_namespace_is_named_with_what_bwrap_said(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(jail.shutil, "which", lambda name: str(fake))
    jail.probe.cache_clear()
    try:
        status = jail.probe()
    finally:
        jail.probe.cache_clear()
    assert not status.available
    assert "user namespaces" in status.reason and "max_user_namespaces" in status.reason
    assert "bwrap said: bwrap: setting up uid map: Permission denied" in status.reason
