"""K trainer workers on one GPU, each held to its share of the device's memory.

    python -m trainer.worker --workers-per-gpu 4      # 4 workers lease and train side by side on one GPU

Small candidates leave most of a GPU idle; several trainings side by side raise the aggregate tokens/s
(`benchmarks/train_throughput.py --processes 1 2 4` measures it). The launcher starts K worker processes
with `GPU_MEMORY_FRACTION=1/K` in their environment; every training child and model server they start
inherits it (the sandbox passes it through) and caps its CUDA caching allocator there, so one greedy
candidate runs out of memory alone instead of starving its neighbours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

FRACTION = "GPU_MEMORY_FRACTION"


def limit_gpu_memory(device) -> float | None:
    """Apply this process's share of a CUDA device's memory (from GPU_MEMORY_FRACTION); the share, or None."""
    import torch

    value = os.environ.get(FRACTION)
    if not value or getattr(device, "type", str(device).split(":")[0]) != "cuda" or not torch.cuda.is_available():
        return None
    fraction = float(value)
    if not 0 < fraction <= 1:
        raise ValueError(f"{FRACTION} must be in (0, 1], got {value!r}")
    torch.cuda.set_per_process_memory_fraction(fraction, torch.device(device))
    return fraction


def run_shared(argv_of, workers: int) -> int:
    """Run WORKERS trainer workers (`argv_of(i)`: the i-th one's arguments); relay SIGTERM and Ctrl-C."""
    env = {**os.environ, FRACTION: f"{1 / workers:.6f}"}
    children = [subprocess.Popen([sys.executable, "-m", "trainer.worker", *argv_of(i)], env=env)
                for i in range(workers)]

    def relay(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, relay)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)
