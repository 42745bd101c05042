"""K trainer workers on one GPU: each runs as its own process with 1/K of the device's memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainer.gpu_share import FRACTION, limit_gpu_memory

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().split(")")[-1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the workers")
def test_workers_per_gpu_starts_k_workers_with_a_memory_share_each_and_stops_them_on_sigterm():
    # No API listens on this port: the workers retry their lease until they are told to stop.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUN_DIR": "unused", "API_TOKEN": "t"}
    launcher = subprocess.Popen([sys.executable, "-m", "trainer.worker", "--workers-per-gpu", "3", "--device", "cpu",
                                 "--api", "http://127.0.0.1:9"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(children_of(launcher.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = children_of(launcher.pid)
        assert len(workers) == 3
        shares = {dict(line.split("=", 1) for line in Path(f"/proc/{pid}/environ").read_text().split("\0")
                       if "=" in line).get(FRACTION) for pid in workers}
        assert shares == {"0.333333"}
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
        assert not any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
                       for pid in workers)
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_a_memory_share_applies_to_cuda_only_and_is_checked(monkeypatch):
    monkeypatch.setenv(FRACTION, "0.5")
    assert limit_gpu_memory(torch.device("cpu")) is None
    monkeypatch.setenv(FRACTION, "1.5")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="must be in"):
            limit_gpu_memory(torch.device("cuda"))


@pytest.mark.gpu
def test_a_memory_share_caps_the_cuda_allocator(monkeypatch):
    monkeypatch.setenv(FRACTION, "0.01")
    assert limit_gpu_memory(torch.device("cuda")) == 0.01
    total = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        torch.empty(int(total * 0.05), dtype=torch.uint8, device="cuda")
    torch.cuda.set_per_process_memory_fraction(1.0)
