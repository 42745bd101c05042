"""The whole system on one machine: the candidate API and one worker process per role.

    with LocalCluster(Path("runs/default")) as cluster:
        ...  # talk to cluster.url with cluster.token

Each process logs to `RUN_DIR/logs/<name>.log`. Stopping sends SIGTERM (workers hand their job back
to the queue) and SIGKILLs whatever is still alive after a grace period.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from database.embedded import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[1]

# name -> module arguments; one process each.
WORKERS = {
    "researcher": ["agent.worker", "--role", "researcher"],
    "engineer": ["agent.worker", "--role", "engineer"],
    "trainer": ["trainer.worker"],
    "evaluator": ["evaluator.worker"],
    "analyst": ["agent.worker", "--role", "analyst"],
}


@dataclass
class LocalCluster:
    run_dir: Path
    workers: dict[str, list[str]] = field(default_factory=lambda: dict(WORKERS))
    port: int | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to every process's environment

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return {**os.environ, **self.env, "API_URL": self.url, "API_TOKEN": self.token, "RUN_DIR": str(self.run_dir.resolve()),
                "PYTHONPATH": python_path, "MONGODB_URL": os.environ.get("MONGODB_URL", "")}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log_dir = self.run_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"{name}.log", "ab")
        # Its own session keeps a terminal's Ctrl-C for us to relay in order; SIGTERM if we die unannounced.
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=self._env(), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=lambda: die_with_parent(signal.SIGTERM))
        self.processes[name] = process
        return process

    def start_api(self, timeout_s: float = 60.0) -> None:
        self.port = self.port or free_port()
        api = self._spawn("api", ["database", "--port", str(self.port)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if api.poll() is not None:
                raise RuntimeError(f"the API exited with code {api.returncode}; see {self.run_dir / 'logs/api.log'}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer on {self.url} within {timeout_s:.0f}s")

    def start_worker(self, name: str) -> subprocess.Popen:
        return self._spawn(name, self.workers[name])

    def start(self) -> LocalCluster:
        self.start_api()
        for name in self.workers:
            self.start_worker(name)
        return self

    def dead_workers(self) -> list[str]:
        return [name for name, p in self.processes.items() if name != "api" and p.poll() is not None]

    def kill(self, name: str) -> None:
        """SIGKILL one process group, as a crash would."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self, grace_s: float = 15.0) -> None:
        # Workers first, so they can hand their jobs back to a live API.
        order = [n for n in self.processes if n != "api"] + (["api"] if "api" in self.processes else [])
        for names in (order[:-1], order[-1:]):
            for name in names:
                if self.processes[name].poll() is None:
                    os.killpg(self.processes[name].pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for name in names:
                try:
                    self.processes[name].wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.kill(name)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_on_sigterm() -> None:
    """Make SIGTERM stop this process as Ctrl-C does, so that its cleanup (`LocalCluster.stop`) runs."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
