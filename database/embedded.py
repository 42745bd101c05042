"""An embedded MongoDB-wire server (nx-27017 over SQLite) for machines without MongoDB.

The API talks to it with the same pymongo driver code it uses against real MongoDB, so nothing
differs but the URL. The server is a child process on a free loopback port; its data lives in one
file, so a restarted API on the same file finds everything that was committed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send SIGNUM to this (child) process when the one that started it dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signum)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedMongo:
    """Start with `EmbeddedMongo(path).start()`; `.url` is the MongoDB URL; `.stop()` ends it."""

    def __init__(self, db_path: Path | str, *, port: int | None = None, log_path: Path | None = None):
        self.db_path = Path(db_path)
        self.port = port or free_port()
        self.log_path = log_path or self.db_path.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def _command(self) -> list[str]:
        exe = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
        if not Path(exe).exists():
            raise RuntimeError("the embedded database needs nx-27017: pip install nx-27017")
        pid_file = self.db_path.with_suffix(".pid")
        # The server logs to stderr, which goes to the log file; its --log-file would write every line twice.
        return [exe, "--host", "127.0.0.1", "-p", str(self.port), "--db", str(self.db_path),
                "--log-file", os.devnull, "--pid-file", str(pid_file)]

    def _stop_stale_server(self) -> None:
        """A crashed API may leave its server (and pid file) behind on our data file: stop it first."""
        pid_file = self.db_path.with_suffix(".pid")
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
            return
        if "nx" in cmdline and str(self.db_path) in cmdline:
            os.kill(pid, signal.SIGKILL)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
        pid_file.unlink(missing_ok=True)

    def start(self, timeout_s: float = 20.0) -> EmbeddedMongo:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._stop_stale_server()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"),
            # Its own session keeps a terminal's Ctrl-C away from it, so the API can shut it down in order.
            start_new_session=True, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded database exited with code {self.process.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"embedded database did not listen on port {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
