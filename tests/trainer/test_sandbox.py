"""The sandbox stops hostile programs within their limits, says why, and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import trainer.sandbox
from trainer.processes import session_processes
from trainer.sandbox import run_sandboxed

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's monitor reads Linux /proc")

# Every hostile program first writes its pid: the mark that it started running. (In the kernel jail
# that pid is its number inside its own PID namespace, not the session's id.)
PROLOGUE = "import os\nopen('pid', 'w').write(str(os.getpid()))\n"
# The id of every sandbox session started in the current test: the pid of its outermost process.
SESSIONS: list[int] = []


@pytest.fixture(autouse=True)
def record_sessions(monkeypatch):
    spawn = trainer.sandbox.spawn_sandboxed

    def recording(*args, **kwargs):
        sandbox = spawn(*args, **kwargs)
        SESSIONS.append(sandbox.process.pid)
        return sandbox

    SESSIONS.clear()
    monkeypatch.setattr(trainer.sandbox, "spawn_sandboxed", recording)


def sandboxed(code: str, workdir: Path, **limits):
    limits = {"timeout_s": 20, "memory_mb": 2000, **limits}
    result = run_sandboxed([sys.executable, "-c", PROLOGUE + textwrap.dedent(code)], workdir=workdir, **limits)
    assert (workdir / "pid").exists(), f"the program never started: {result.reason}\n{result.stderr_tail}"
    return result, SESSIONS[-1]


def assert_nothing_survives(sid: int | None) -> None:
    assert sid is not None, "the child never wrote its pid: nothing was checked"
    deadline = time.monotonic() + 5
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_processes(sid) == []


def test_a_well_behaved_program_reports_its_result(tmp_path):
    result, sid = sandboxed("""
        import json
        print("hello from the child")
        json.dump({"answer": 42}, open("result.json", "w"))
    """, tmp_path)
    assert result.ok and result.returncode == 0 and result.reason is None
    assert result.result == {"answer": 42} and "hello from the child" in result.stdout_tail
    assert_nothing_survives(sid)


def test_an_infinite_loop_is_stopped_at_the_wall_clock_limit(tmp_path):
    result, sid = sandboxed("while True:\n    pass\n", tmp_path, timeout_s=2)
    assert not result.ok
    assert result.reason == "timed out: still running after 2 s (wall-clock limit)"
    assert 2 <= result.wall_s < 15
    assert_nothing_survives(sid)


HOG = """
    import time
    hoard = []
    for _ in range(60):  # 16 MB a step, at most about 1 GB
        hoard.append(b"x" * 2**24)
        time.sleep(0.05)
    time.sleep(60)
"""


def test_a_memory_hog_hits_the_address_space_limit(tmp_path):
    result, sid = sandboxed(HOG, tmp_path, memory_mb=300)
    assert not result.ok
    assert result.reason == "out of memory: the program exceeded its 300 MB limit"
    assert_nothing_survives(sid)


def test_a_memory_hog_is_killed_by_the_resident_memory_monitor(tmp_path):
    # CUDA children get no address-space limit (CUDA reserves far more than it uses): the monitor acts.
    result, sid = sandboxed(HOG, tmp_path, memory_mb=300, cuda=True)
    assert not result.ok
    assert result.reason.startswith("out of memory: ") and result.reason.endswith("MB resident, over the 300 MB limit")
    assert result.wall_s < 20
    assert_nothing_survives(sid)


@pytest.mark.parametrize("code, refused", [
    ("os.fork()", "os.fork"),
    ("os.system('true')", "os.system"),
    ("import subprocess\nsubprocess.run(['sh', '-c', 'true'])", "starting 'sh'"),
    ("os.kill(os.getppid(), 9)", "os.kill"),
])
def test_starting_processes_is_refused(tmp_path, code, refused):
    result, sid = sandboxed(code, tmp_path)
    assert result.reason == f"refused by the sandbox: {refused} is not allowed"
    assert_nothing_survives(sid)


def test_a_ctypes_fork_bomb_is_killed_by_the_process_monitor(tmp_path):
    # libc's fork bypasses the audit hook. Bounded (2^7 processes at most) so a failure harms nobody.
    result, sid = sandboxed("""
        import ctypes, time
        libc = ctypes.CDLL(None)
        for _ in range(7):
            libc.fork()
            time.sleep(0.3)
        time.sleep(60)
    """, tmp_path, max_processes=16, timeout_s=30)
    assert not result.ok
    assert result.reason.startswith("too many processes: ")
    assert result.reason.endswith("over the limit of 16 (a fork bomb?)")
    assert_nothing_survives(sid)


def test_network_use_is_refused(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        result, sid = sandboxed(f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
        """, tmp_path)
        assert result.reason == "refused by the sandbox: network access is not allowed"
        # Below the audit hook (ctypes), a private network namespace has no route to the parent's loopback.
        raw, _ = sandboxed(f"""
            import ctypes, json, socket, struct
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
            address = struct.pack("=HH4s8x", socket.AF_INET, socket.htons({port}), socket.inet_aton("127.0.0.1"))
            rc = libc.connect(fd, address, len(address))
            json.dump({{"connect": rc, "isolated": os.environ["SANDBOX_NETWORK_ISOLATED"]}}, open("result.json", "w"))
        """, tmp_path / "raw")
        if raw.result["isolated"] == "1":
            assert raw.result["connect"] == -1
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert_nothing_survives(sid)


def test_writing_outside_the_working_directory_is_refused(tmp_path):
    outside = tmp_path / "outside.txt"
    result, sid = sandboxed(f"open({str(outside)!r}, 'w').write('escaped')", tmp_path / "work")
    assert result.reason == f"refused by the sandbox: writing {outside} outside the working directory is not allowed"
    assert not outside.exists()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result, _ = sandboxed(f"os.remove({str(precious)!r})", tmp_path / "work2")
    assert result.reason == f"refused by the sandbox: os.remove on {precious} outside the working directory is not allowed"
    assert precious.read_text() == "keep me"
    # Inside its own directory the program writes freely.
    result, _ = sandboxed("open('notes.txt', 'w').write('fine')", tmp_path / "work3")
    assert result.ok and (tmp_path / "work3" / "notes.txt").read_text() == "fine"
    assert_nothing_survives(sid)


def test_the_parents_secrets_stay_out_of_reach(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "s3cret-api-token")
    monkeypatch.setenv("OPENAI_API_KEY", "s3cret-llm-key")
    result, sid = sandboxed("""
        import json
        json.dump(dict(os.environ), open("result.json", "w"))
        open(f"/proc/{os.getppid()}/environ", "rb").read()
    """, tmp_path / "python")
    assert "API_TOKEN" not in result.result and "OPENAI_API_KEY" not in result.result
    assert "s3cret" not in json.dumps(result.result)
    assert result.result["HOME"] == str((tmp_path / "python").resolve())
    # (In the kernel jail the parent is bwrap's init: the worker is outside the PID namespace.)
    assert result.reason.startswith("refused by the sandbox: reading another process's /proc/")
    assert result.reason.endswith("/environ is not allowed")
    # Below the audit hook: libc's open and read of the parent's file, and of this process's (the worker's,
    # by its pid on the host), find no secret.
    result, _ = sandboxed(f"""
        import ctypes, json
        libc = ctypes.CDLL(None, use_errno=True)
        found = {{}}
        for pid in (os.getppid(), {os.getpid()}):
            buffer = ctypes.create_string_buffer(1 << 16)
            fd = libc.open(f"/proc/{{pid}}/environ".encode(), os.O_RDONLY)
            size = libc.read(fd, buffer, len(buffer)) if fd >= 0 else -1
            found[pid] = {{"fd": fd, "read": buffer.raw[:max(size, 0)].decode("latin-1")}}
        json.dump(found, open("result.json", "w"))
    """, tmp_path / "ctypes")
    assert result.ok
    assert result.result[str(os.getpid())]["fd"] == -1
    assert "s3cret" not in json.dumps(result.result)
    assert_nothing_survives(sid)


def test_other_services_secrets_stay_out_of_reach(tmp_path):
    # A sibling process holding a token (the API, another worker), not the sandbox's own parent.
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               env={**os.environ, "API_TOKEN": "s3cret-sibling-token"})
    try:
        result, _ = sandboxed(f"""
            import ctypes, json
            libc = ctypes.CDLL(None, use_errno=True)
            buffer = ctypes.create_string_buffer(1 << 16)
            fd = libc.open(b"/proc/{sibling.pid}/environ", os.O_RDONLY)
            size = libc.read(fd, buffer, len(buffer)) if fd >= 0 else -1
            json.dump({{"read": buffer.raw[:max(size, 0)].decode("latin-1")}}, open("result.json", "w"))
        """, tmp_path)
    finally:
        sibling.kill()
        sibling.wait()
    assert result.ok and "s3cret" not in result.result["read"]


def test_a_child_dies_with_the_process_that_started_it(tmp_path):
    workdir = tmp_path / "work"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from trainer.sandbox import spawn_sandboxed
        code = {PROLOGUE!r} + "import time\\ntime.sleep(120)\\n"
        sandbox = spawn_sandboxed([sys.executable, "-c", code], workdir=Path({str(workdir)!r}), timeout_s=120,
                                  memory_mb=500)
        Path({str(tmp_path / "sid")!r}).write_text(str(sandbox.process.pid))
        sandbox.process.wait()
    """)], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sid = int((tmp_path / "sid").read_text())
        assert session_processes(sid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert_nothing_survives(sid)


def test_a_crash_and_a_cancellation_are_explained(tmp_path):
    result, _ = sandboxed("raise SystemExit('bad input: 3')", tmp_path / "exit")
    assert not result.ok and result.returncode == 1
    assert result.reason == "exited with status 1: bad input: 3"
    stop = threading.Event()

    def cancel_once_running():  # not before: a child stopped before it starts proves nothing
        deadline = time.monotonic() + 20
        while not (tmp_path / "stop" / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=cancel_once_running, daemon=True).start()
    result, sid = sandboxed("import time\ntime.sleep(60)", tmp_path / "stop", stop=stop)
    assert result.reason == "stopped: the job was cancelled"
    assert_nothing_survives(sid)
