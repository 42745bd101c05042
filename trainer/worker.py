"""The trainer service: `python -m trainer.worker [--once] [--device cuda:0]`.

Leases `train` jobs from the candidate API, trains the experiment's program in the sandbox (a child
process with hard limits; see trainer.sandbox), heartbeats meanwhile, and reports the metrics and
the checkpoint's location (RUN_DIR/checkpoints/<index>). A program that crashes, diverges or breaks
a limit is the candidate's fault: the job fails without retry and the experiment records why, or,
while repairs remain, the engineer gets the error to fix the program. Several workers may share one
GPU: exploration-scale models leave most of an H100 idle.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import threading
from pathlib import Path

import torch

from database.worker import CandidateError, Outcome, run_worker
from trainer.fidelity import get_fidelity
from trainer.sandbox import run_sandboxed
from trainer.train import load_data

log = logging.getLogger("trainer")
MAX_REPAIRS = 2
# Result fields kept on the experiment (the loss curve included; the full fidelity is in the checkpoint).
TRAIN_FIELDS = ("loss_curve", "val_curve", "val_loss", "val_loss_start", "tokens_per_s", "peak_memory_mb", "params",
                "non_embedding_params", "mixer_params_per_layer", "wall_s", "train_s", "gpu_s", "cpu_s", "tokens",
                "steps_done", "device", "backend", "seed", "checkpoint")


def run_dir() -> Path:
    return Path(os.environ.get("RUN_DIR", "runs/default")).resolve()


def pick_device(requested: str | None = None) -> str:
    requested = requested or os.environ.get("TRAINER_DEVICE", "auto")
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_in_sandbox(index: int, program: str, payload: dict, device: str, stop: threading.Event,
                     workdir: Path) -> tuple[dict, object]:
    """Blocking: prepare data (trusted), then train the program in a sandboxed child."""
    fidelity = get_fidelity(payload.get("fidelity", "smoke"), payload.get("overrides"))
    cache = run_dir() / "cache"
    load_data(fidelity, cache)  # tokenise once, outside the sandbox, which may only read it
    shutil.rmtree(workdir, ignore_errors=True)
    threads = int(os.environ.get("TRAINER_THREADS", str(max(1, (os.cpu_count() or 2)))))
    sandbox = sandboxed_training(program, fidelity, payload.get("overrides") or {}, seed=int(payload.get("seed", 0)),
                                 device=device, cache=cache, workdir=workdir, threads=threads, stop=stop)
    return fidelity.to_dict(), sandbox


def sandboxed_training(program: str, fidelity, overrides: dict, *, seed: int, device: str, cache: Path,
                       workdir: Path, threads: int, stop: threading.Event | None = None,
                       timeout_s: float | None = None):
    """`python -m trainer.train` on the program in a sandboxed child under WORKDIR: how every candidate trains.

    The data must be prepared in CACHE already (the child may only read it). Returns the `SandboxResult`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "program.py").write_text(program)
    settings = [f"{k}={v}" for k, v in overrides.items()]
    argv = [sys.executable, "-m", "trainer.train", "--program", "program.py", "--fidelity", fidelity.name,
            "--out", ".", "--seed", str(seed), "--cache", str(cache), "--device", device,
            "--no-progress", *(["--set", *settings] if settings else [])]
    return run_sandboxed(argv, workdir=workdir, timeout_s=timeout_s or fidelity.timeout_s,
                         memory_mb=fidelity.memory_mb, env={"OMP_NUM_THREADS": str(threads)},
                         writable=[cache / "compile"], cuda=device.startswith("cuda"), stop=stop)


async def handle_train(job: dict, client) -> dict | Outcome:
    index = job["experiment"]
    if index is None:
        raise CandidateError("a train job needs an experiment")
    experiment = await client.get_experiment(index)
    payload = job.get("payload") or {}
    device = pick_device(payload.get("device"))
    workdir = run_dir() / "sandbox" / f"train-{index}-{job['id'][:8]}"
    stop = threading.Event()
    try:
        _, sandbox = await asyncio.to_thread(train_in_sandbox, index, experiment["program"], payload, device, stop,
                                             workdir)
    except asyncio.CancelledError:
        stop.set()  # the lease was lost or the worker is stopping: kill the child now
        raise
    result = sandbox.result or {}
    costs = {"gpu_seconds": float(result.get("gpu_s") or 0.0), "cpu_seconds": float(result.get("cpu_s") or 0.0)}
    if not sandbox.ok or result.get("status") != "ok":
        reason = result.get("reason") or sandbox.reason or "training failed"
        detail = result.get("traceback") or sandbox.stderr_tail
        await client.update_experiment(index, costs=costs)
        repairs = int(payload.get("repairs", 0))
        if repairs < int(payload.get("max_repairs", MAX_REPAIRS)):
            log.info("experiment %s failed in training (%s); asking the engineer for a repair", index, reason)
            repair = {"stage": "train", "error": f"{reason}\n{detail[-3000:]}"}
            return Outcome({"failed": reason, "repair": repairs + 1},
                           next_jobs=[{"kind": "engineer", "experiment": index,
                                       "payload": {**payload, "repairs": repairs + 1, "repair": repair}}])
        raise CandidateError(f"training failed: {reason}")

    checkpoint = run_dir() / "checkpoints" / str(index)
    shutil.rmtree(checkpoint, ignore_errors=True)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(workdir / "checkpoint"), checkpoint)
    result["checkpoint"] = str(checkpoint)
    train = {k: result.get(k) for k in TRAIN_FIELDS}
    await client.update_experiment(index, train=train, status="trained", costs=costs)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"experiment": index, "val_loss": result["val_loss"], "tokens_per_s": result["tokens_per_s"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("API_TOKEN", "dev-token"))
    parser.add_argument("--worker-id", default=os.environ.get("WORKER_ID"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default TRAINER_DEVICE or auto)")
    parser.add_argument("--once", action="store_true", help="handle one job, then exit")
    args = parser.parse_args(argv)
    if args.device:
        os.environ["TRAINER_DEVICE"] = args.device
    logging.basicConfig(level=logging.INFO, format="%(asctime)s trainer %(levelname)s %(message)s")
    run_worker(["train"], handle_train, api_url=args.api, token=args.token, worker_id=args.worker_id, once=args.once)


if __name__ == "__main__":
    main()
