"""Train one program with several seeds, each in its own sandbox, and merge the runs into one record.

    runs = train_seeds(program, fidelity, seeds=[0, 1, 2], device="cpu", cache=..., workdir=...)
    record = merge_runs(runs)       # val_loss is the mean; val_loss_stats has mean, se and per-seed values

Seeds run side by side, up to two per core, each child with its share of the cores (a small model
trains faster on one thread than on two it must share), so that three seeds on two cores cost
about one and a half runs, not two.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from database.stats import mean_se
from trainer.cores import available_cores
from trainer.data import TokenData, data_directory
from trainer.distributed import resolve_nproc, sandbox_command, sandbox_limits
from trainer.sandbox import SandboxResult, run_sandboxed
from trainer.train import SYNTHETIC

# Per-seed fields whose mean is the record's value; each also gets `<field>_stats` = {mean, se, per_seed}.
AVERAGED = ("val_loss", "val_loss_start", "tokens_per_s", "score", "recall", "claimed_val_loss")
# Fields that add up over seeds (costs).
SUMMED = ("wall_s", "train_s", "gpu_s", "cpu_s", "tokens", "judge_s")
# Fields the same in every seed (the first one's is kept).
SHARED = ("program_sha256", "params", "non_embedding_params", "mixer_params_per_layer", "device", "backend", "threads",
          "peak_memory_mb", "steps_done")


def plan(seeds: int, cores: int | None = None, device: str = "cpu") -> tuple[int, int]:
    """(runs side by side, torch threads per run). GPU runs go one at a time: they share one device."""
    cores = cores or available_cores()
    if device.startswith("cuda"):
        return 1, cores
    # Up to two single-threaded runs per core: the last seed then does not run alone on an idle core.
    side_by_side = max(1, min(seeds, 2 * cores))
    return side_by_side, max(1, cores // side_by_side)


def sandboxed_training(program: str, fidelity, overrides: dict, *, seed: int, device: str, cache: Path,
                       workdir: Path, threads: int, stop: threading.Event | None = None,
                       timeout_s: float | None = None):
    """`python -m trainer.train` on the program in a sandboxed child under WORKDIR: how every candidate trains.

    The data must be prepared in CACHE already; the child sees its training split only, read-only. Compiled
    kernels stay in WORKDIR: nothing one candidate writes is read by another's job. Returns the `SandboxResult`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "program.py").write_text(program)
    settings = [f"{k}={v}" for k, v in overrides.items()]
    # Decided here, where the GPUs are counted once: the child never launches more processes by itself.
    nproc = resolve_nproc(fidelity.nproc, device)
    argv = [sys.executable, "-m", "trainer.train", "--program", "program.py", "--fidelity", fidelity.name,
            "--out", ".", "--seed", str(seed), "--cache", str(cache), "--device", device, "--nproc", str(nproc),
            "--no-progress", *(["--set", *settings] if settings else [])]
    cuda = device.startswith("cuda")
    cpu_s = fidelity.cpu_s * threads + 30 if fidelity.cpu_s and not cuda else None  # + start-up
    env = {"OMP_NUM_THREADS": str(threads)}
    if nproc > 1:  # one jail around the whole torchrun tree, limits for all its ranks (trainer.distributed)
        # argv[3:]: what follows "python -m trainer.train".
        argv, env = sandbox_command(nproc, argv[3:], workdir, device=device, threads=threads)
    return run_sandboxed(argv, workdir=workdir, timeout_s=timeout_s or fidelity.timeout_s, cpu_s=cpu_s,
                         disk_mb=fidelity.disk_mb, env=env, **sandbox_limits(fidelity, nproc),
                         readable=training_files(fidelity, cache),
                         cuda=cuda, stop=stop)


def training_files(fidelity, cache: Path) -> list[Path]:
    """The data files a training child may read: the training split, never the validation one."""
    if fidelity.dataset == SYNTHETIC:
        return []  # generated in the child
    return TokenData.training_files(data_directory(cache, fidelity.dataset, fidelity.vocab_size))


def train_seeds(program: str, fidelity, overrides: dict, *, seeds: list[int], device: str, cache: Path,
                workdir: Path, stop: threading.Event | None = None, cores: int | None = None,
                timeout_s: float | None = None) -> list[tuple[int, SandboxResult]]:
    """Blocking: train each seed in a sandbox under WORKDIR/seed-<s>; (seed, result) in seed order."""
    side_by_side, threads = plan(len(seeds), cores, device)

    def one(seed: int) -> tuple[int, SandboxResult]:
        return seed, sandboxed_training(program, fidelity, overrides, seed=seed, device=device, cache=cache,
                                        workdir=workdir / f"seed-{seed}", threads=threads, stop=stop,
                                        timeout_s=timeout_s)

    with ThreadPoolExecutor(max_workers=side_by_side) as pool:
        return list(pool.map(one, seeds))


def first_failure(runs: list[tuple[int, SandboxResult]]) -> tuple[int, str, str] | None:
    """(seed, reason, detail) of the first seed whose training failed, or None when all succeeded."""
    for seed, sandbox in runs:
        result = sandbox.result or {}
        if not sandbox.ok or result.get("status") != "ok":
            reason = result.get("reason") or sandbox.reason or "training failed"
            return seed, reason, result.get("traceback") or sandbox.stderr_tail
    return None


def merge_runs(results: list[dict]) -> dict:
    """One record from the per-seed results of `trainer.train` (all successful)."""
    first = results[0]
    merged = {key: first.get(key) for key in SHARED}
    merged.update(seeds=[r.get("seed") for r in results], loss_curve=first.get("loss_curve"),
                  val_curve=first.get("val_curve"), val_curves=[r.get("val_curve") for r in results])
    for key in AVERAGED:
        stats = mean_se([r.get(key) for r in results])
        if stats is not None:
            merged[key], merged[f"{key}_stats"] = stats["mean"], stats
    for key in SUMMED:
        merged[key] = sum(float(r.get(key) or 0.0) for r in results)
    tasks = sorted({name for r in results for name in (r.get("tasks") or {})})
    if tasks:
        merged["tasks"] = {name: mean_se([(r.get("tasks") or {}).get(name) for r in results]) for name in tasks}
    return merged
