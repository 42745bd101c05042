"""A pipeline stopped by SIGTERM, or killed outright, leaves none of the processes it started behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def started_by(run_dir: Path) -> list[int]:
    """Live processes whose environment or command line names RUN_DIR: the API, its database, the workers."""
    marker = str(run_dir.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().split(")")[-1].split()[0] == "Z":
                continue  # a zombie has already exited
            if marker in (entry / "environ").read_bytes() or marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the processes")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopping_the_pipeline_stops_every_process_it_started(tmp_path, how):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_BASE_URL": "", "RUN_DIR": str(run_dir)}
    pipeline = subprocess.Popen([sys.executable, "-m", "agent.pipeline", "--experiments", "0", "--run-dir",
                                 str(run_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    try:
        lines = []
        for line in pipeline.stdout:  # the workers are up once the dashboard address is printed
            lines.append(line)
            if line.startswith("dashboard:"):
                break
        assert any(line.startswith("dashboard:") for line in lines), "".join(lines)
        assert wait_until(lambda: len(started_by(run_dir)) >= 7, 60), started_by(run_dir)  # api, db, 5 workers

        pipeline.send_signal(how)
        pipeline.wait(timeout=90)
        assert wait_until(lambda: not started_by(run_dir), 60), f"left running: {started_by(run_dir)}"
        if how == signal.SIGTERM:
            assert pipeline.returncode == 130
            assert "stopped:" in pipeline.stdout.read()
    finally:
        if pipeline.poll() is None:
            pipeline.kill()
        for pid in started_by(run_dir):
            os.kill(pid, signal.SIGKILL)
