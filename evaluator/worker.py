"""The evaluator service: `python -m evaluator.worker [--once] [--api URL] [--token T] [--device cuda]`.

Leases `evaluate` jobs from the candidate API, benchmarks the experiment's checkpoint at the tier named
by the job's fidelity (smoke, explore, verify), stores the scores as the experiment's `eval` and adds
the time spent to its costs. The benchmark runs in a thread, so the lease's heartbeats go on.

Whose fault a failure is decides whether the job is retried: a missing checkpoint, one whose program
no longer loads, a model that crashes or scores NaN are the candidate's (`CandidateError`, no retry);
missing benchmark data or a broken library are the infrastructure's (retried).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import time
from pathlib import Path

from database.worker import CandidateError, run_worker
from evaluator.evaluate import TIERS, default_cache_dir
from evaluator.replicated import SYNTHETIC_TIER, evaluate_synthetic, merge_evaluations
from trainer.worker import run_dir

log = logging.getLogger("evaluator")


def tier_of(job: dict, experiment: dict) -> str:
    fidelity = (job.get("payload") or {}).get("fidelity") or experiment.get("fidelity") or "smoke"
    if fidelity not in TIERS and fidelity != SYNTHETIC_TIER:
        raise CandidateError(f"no evaluation tier for fidelity {fidelity!r}; tiers are "
                             f"{sorted([*TIERS, SYNTHETIC_TIER])}")
    return fidelity


def checkpoints_of(experiment: dict) -> list[Path]:
    """The sealed checkpoint of every training seed, found under the run's own checkpoint directory.

    Paths stored in the document only name which seeds exist: a checkpoint is always looked up as
    RUN_DIR/checkpoints/<index>/seed-<seed>, so no document can point the evaluator elsewhere.
    """
    train = experiment.get("train") or {}
    seeds = train.get("seeds") or [0]
    if not (train.get("checkpoints") or train.get("checkpoint")):
        raise CandidateError(f"experiment #{experiment['index']} has no checkpoint to evaluate (train.checkpoint "
                             "is not set)")
    home = run_dir() / "checkpoints" / str(int(experiment["index"]))
    checkpoints = [home / f"seed-{int(seed)}" for seed in seeds]
    for checkpoint in checkpoints:
        if not (checkpoint / "config.json").exists():
            raise CandidateError(f"experiment #{experiment['index']}: checkpoint {checkpoint} is missing "
                                 "(no config.json there)")
    return checkpoints


def evaluate_candidate(checkpoint: Path, tier: str, *, limit: int | None, cache_dir: Path, device: str,
                       workdir: Path) -> dict:
    """Score a checkpoint through a fresh sandboxed model, sorting failures into the candidate's and the rest."""
    from evaluator.evaluate import evaluate_checkpoint
    from evaluator.tasks import build_tasks

    if tier != SYNTHETIC_TIER:
        build_tasks(cache_dir, TIERS[tier]["tasks"])  # benchmark data problems are not the candidate's
    try:
        if tier == SYNTHETIC_TIER:
            return evaluate_synthetic(checkpoint, device, cache_dir=cache_dir, workdir=workdir)
        return evaluate_checkpoint(checkpoint, tier, limit=limit, cache_dir=cache_dir, device=device, progress=False,
                                   workdir=workdir)
    except (ValueError, RuntimeError, FloatingPointError, IndexError, OSError) as err:
        # A tampered or broken checkpoint, a non-finite score, or the program failing inside its sandbox.
        raise CandidateError(f"evaluation failed: {err}") from err


async def reference_checkpoint(client, experiment: dict) -> Path | None:
    """The seed baseline's first checkpoint at the experiment's fidelity (its own, for the baseline)."""
    baseline = await client.baseline(experiment.get("fidelity") or "smoke")
    try:
        return checkpoints_of(baseline or experiment)[0]
    except CandidateError:
        return None


def measure_cost(checkpoint: Path, reference: Path | None, *, device: str, workdir: Path) -> dict:
    """Speed relative to the seed and peak memory; a failure here is recorded, never the candidate's verdict."""
    from evaluator.cost import cost_profile

    if reference is None:
        return {"error": "no trained seed baseline to compare with"}
    try:
        return cost_profile(checkpoint, reference, workdir=workdir, device=device)
    except (RuntimeError, OSError, ValueError) as err:
        log.warning("cost of %s not measured: %s", checkpoint, err)
        return {"error": str(err)[:500]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def handle_evaluate(job: dict, client) -> dict:
    index = job.get("experiment")
    if index is None:
        raise CandidateError("an evaluate job needs an experiment")
    experiment = await client.get_experiment(index)
    checkpoints = checkpoints_of(experiment)
    tier = tier_of(job, experiment)
    limit = (job.get("payload") or {}).get("eval_limit")
    device = os.environ.get("EVALUATOR_DEVICE", "cpu")
    cpu_started = time.process_time()
    per_seed = [await asyncio.to_thread(evaluate_candidate, checkpoint, tier, limit=limit, cache_dir=default_cache_dir(),
                                        device=device, workdir=run_dir() / "sandbox" / f"eval-{index}-{job['id'][:8]}-{i}")
                for i, checkpoint in enumerate(checkpoints)]
    scores = merge_evaluations(per_seed)
    cost = await asyncio.to_thread(measure_cost, checkpoints[0], await reference_checkpoint(client, experiment),
                                   device=device, workdir=run_dir() / "sandbox" / f"cost-{index}-{job['id'][:8]}")
    costs = {"cpu_seconds": round(time.process_time() - cpu_started, 3)}
    if device.startswith("cuda"):
        costs["gpu_seconds"] = round(scores["wall_s"], 3)
    await client.update_experiment(index, eval=scores, cost=cost, status="evaluated", costs=costs)
    log.info("evaluated #%s (%s): average %s, recall %s, perplexity %s", index, tier, scores["average"],
             scores["recall"], scores["perplexity"])
    return {"experiment": index, "tier": tier, "average": scores["average"], "recall": scores["recall"],
            "perplexity": scores["perplexity"], "wall_s": round(scores["wall_s"], 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("API_TOKEN", "dev-token"))
    parser.add_argument("--worker-id", default=os.environ.get("WORKER_ID"))
    parser.add_argument("--device", default=None, help="cpu or cuda (default EVALUATOR_DEVICE or cpu)")
    parser.add_argument("--once", action="store_true", help="handle one job, then exit")
    args = parser.parse_args(argv)
    if args.device:
        os.environ["EVALUATOR_DEVICE"] = args.device
    logging.basicConfig(level=logging.INFO, format="%(asctime)s evaluator %(levelname)s %(message)s")
    run_worker(["evaluate"], handle_evaluate, api_url=args.api, token=args.token, worker_id=args.worker_id,
               once=args.once)


if __name__ == "__main__":
    main()
