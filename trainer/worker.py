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
import threading
from pathlib import Path

import torch

from database.worker import CandidateError, Outcome, run_worker
from trainer.boundary import ModelFailed
from trainer.checkpoint import sha256
from trainer.cores import claimed_cores
from trainer.fidelity import get_fidelity
from trainer.gpu_share import run_shared
from trainer.job_limits import PayloadRefused, check_payload_overrides
from trainer.judge import LeakFound
from trainer.replicates import first_failure, merge_runs, train_seeds
from trainer.sandbox import MachineBusy
from trainer.train import load_data
from trainer.trusted import ClaimRefuted, check_claim, measure, seal

log = logging.getLogger("trainer")
MAX_REPAIRS = 2


def run_dir() -> Path:
    return Path(os.environ.get("RUN_DIR", "runs/default")).resolve()


def pick_device(requested: str | None = None) -> str:
    requested = requested or os.environ.get("TRAINER_DEVICE", "auto")
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def seeds_of(payload: dict, fidelity) -> list[int]:
    """The job's training seeds: `seeds` as given, else `replicates` seeds counted up from `seed`."""
    if payload.get("seeds"):
        return [int(s) for s in payload["seeds"]]
    base = int(payload.get("seed", 0))
    return list(range(base, base + fidelity.replicates))


def train_job(program: str, payload: dict, device: str, stop: threading.Event, workdir: Path):
    """Blocking: prepare data (trusted), then train every seed of the job in its own sandbox."""
    fidelity = get_fidelity(payload.get("fidelity", "smoke"), payload.get("overrides"))
    cache = run_dir() / "cache"
    load_data(fidelity, cache)  # tokenise once, outside the sandbox, which may only read it
    shutil.rmtree(workdir, ignore_errors=True)
    with claimed_cores() as cores:
        return train_seeds(program, fidelity, payload.get("overrides") or {}, seeds=seeds_of(payload, fidelity),
                           device=device, cache=cache, workdir=workdir, stop=stop, cores=cores)


def seal_and_measure(program: str, fidelity, runs, *, home: Path, workdir: Path, device: str,
                     stop: threading.Event | None = None, cache: Path | None = None) -> list[dict]:
    """Blocking: each seed's weights become a sealed checkpoint under HOME, measured by the trusted side.

    The training child's own validation loss (and task accuracies) stay as `claimed_*`; the record's
    numbers are the parent's. A leak or a model server that fails is the candidate's fault.
    """
    data = load_data(fidelity, cache or run_dir() / "cache")
    shutil.rmtree(home, ignore_errors=True)
    results = []
    for seed, sandbox in runs:
        claimed = dict(sandbox.result or {})
        try:
            checkpoint = seal(workdir / f"seed-{seed}" / "checkpoint", home / f"seed-{seed}", program, fidelity,
                              data, seed=seed, device=device)
            trusted = measure(checkpoint, fidelity, data, workdir=workdir / f"judge-{seed}", device=device,
                              stop=stop, seed=seed)
            check_claim(claimed.get("val_loss"), trusted["val_loss"])
        except (LeakFound, ClaimRefuted) as found:
            raise CandidateError(f"rejected by the trusted re-check of the trained weights (seed {seed}): {found}") \
                from found
        except (ModelFailed, ValueError, OSError) as err:
            raise CandidateError(f"the trained model could not be measured (seed {seed}): {err}") from err
        claims = {f"claimed_{key}": claimed.get(key) for key in ("val_loss", "score", "recall") if key in claimed}
        # The numbers belong to this version of the program: a later repair replaces them, never joins them.
        results.append({**claimed, **claims, **trusted, "checkpoint": str(checkpoint),
                        "program_sha256": sha256(program)})
    return results


async def handle_train(job: dict, client) -> dict | Outcome:
    index = job["experiment"]
    if index is None:
        raise CandidateError("a train job needs an experiment")
    experiment = await client.get_experiment(index)
    payload = job.get("payload") or {}
    try:
        check_payload_overrides(payload.get("fidelity", "smoke"), payload.get("overrides"))
    except PayloadRefused as refused:
        raise CandidateError(str(refused)) from refused
    device = pick_device(payload.get("device"))
    workdir = run_dir() / "sandbox" / f"train-{index}-{job['id'][:8]}"
    stop = threading.Event()
    try:
        runs = await asyncio.to_thread(train_job, experiment["program"], payload, device, stop, workdir)
    except asyncio.CancelledError:
        stop.set()  # the lease was lost or the worker is stopping: kill the children now
        raise
    results = [sandbox.result or {} for _, sandbox in runs]
    costs = {"gpu_seconds": sum(float(r.get("gpu_s") or 0.0) for r in results),
             "cpu_seconds": sum(float(r.get("cpu_s") or 0.0) for r in results)}
    busy = [seed for seed, sandbox in runs if sandbox.timed_out]
    if busy:
        # The wall clock is a backstop: reaching it means a busy machine, not a verdict on the program.
        raise MachineBusy(f"the machine was too busy: training seed {busy[0]} ran past its wall-clock backstop "
                          f"of {runs[0][1].limits.get('timeout_s', 0):.0f} s before using its CPU time; retrying")
    failure = first_failure(runs)
    if failure is not None:
        seed, reason, detail = failure
        reason = f"{reason} (seed {seed})" if len(runs) > 1 else reason
        await client.update_experiment(index, costs=costs)
        repairs = int(payload.get("repairs", 0))
        if repairs < int(payload.get("max_repairs", MAX_REPAIRS)):
            log.info("experiment %s failed in training (%s); asking the engineer for a repair", index, reason)
            repair = {"stage": "train", "error": f"{reason}\n{detail[-3000:]}"}
            return Outcome({"failed": reason, "repair": repairs + 1},
                           next_jobs=[{"kind": "engineer", "experiment": index,
                                       "payload": {**payload, "repairs": repairs + 1, "repair": repair}}])
        raise CandidateError(f"training failed: {reason}")

    home = run_dir() / "checkpoints" / str(index)
    try:
        fidelity = get_fidelity(payload.get("fidelity", "smoke"), payload.get("overrides"))
        results = await asyncio.to_thread(seal_and_measure, experiment["program"], fidelity, runs, home=home,
                                          workdir=workdir, device=device, stop=stop)
    except asyncio.CancelledError:
        stop.set()
        raise
    train = merge_runs(results)
    checkpoints = [r["checkpoint"] for r in results]
    train.update(checkpoint=checkpoints[0], checkpoints=checkpoints)
    extra = {}
    if payload.get("reevaluation") and experiment.get("train"):
        # Fresh seeds replace the scores that made this experiment an elite; the old ones stay on record.
        old = {key: experiment.get(key) for key in ("train", "eval", "fitness", "fitness_parts", "evidence")}
        extra["history"] = [*(experiment.get("history") or []), old]
    await client.update_experiment(index, train=train, status="trained", costs=costs, **extra)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"experiment": index, "val_loss": train["val_loss"], "seeds": train["seeds"],
            "tokens_per_s": train["tokens_per_s"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("API_TOKEN", "dev-token"))
    parser.add_argument("--worker-id", default=os.environ.get("WORKER_ID"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default TRAINER_DEVICE or auto)")
    parser.add_argument("--once", action="store_true", help="handle one job, then exit")
    parser.add_argument("--workers-per-gpu", type=int, default=int(os.environ.get("TRAINER_WORKERS_PER_GPU") or 1),
                        help="run K workers side by side, each with 1/K of the GPU's memory (default 1)")
    args = parser.parse_args(argv)
    if args.workers_per_gpu < 1:
        parser.error(f"--workers-per-gpu must be at least 1, got {args.workers_per_gpu}")
    if args.workers_per_gpu > 1:
        def argv_of(i: int) -> list[str]:
            return [*(["--device", args.device] if args.device else []), *(["--once"] if args.once else []),
                    "--api", args.api, "--workers-per-gpu", "1",
                    *(["--worker-id", f"{args.worker_id}-{i}"] if args.worker_id else [])]

        raise SystemExit(run_shared(argv_of, args.workers_per_gpu))
    if args.device:
        os.environ["TRAINER_DEVICE"] = args.device
    logging.basicConfig(level=logging.INFO, format="%(asctime)s trainer %(levelname)s %(message)s")
    run_worker(["train"], handle_train, api_url=args.api, token=args.token, worker_id=args.worker_id, once=args.once)


if __name__ == "__main__":
    main()
