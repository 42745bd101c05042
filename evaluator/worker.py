"""The evaluator service: `python -m evaluator.worker [--once] [--device cuda]`.

Leases `evaluate` jobs from the candidate API, benchmarks the experiment's checkpoint at the tier of
its fidelity (in a thread, so heartbeats go on), and stores the scores on the experiment. A missing
checkpoint or a non-finite score is the candidate's fault: the job fails without retry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path

from database.worker import CandidateError, run_worker
from evaluator.evaluate import TIERS, evaluate_checkpoint

log = logging.getLogger("evaluator")


def tier_of(fidelity: str) -> str:
    return fidelity if fidelity in TIERS else "smoke"


async def handle_evaluate(job: dict, client) -> dict:
    index = job["experiment"]
    if index is None:
        raise CandidateError("an evaluate job needs an experiment")
    experiment = await client.get_experiment(index)
    checkpoint = (experiment.get("train") or {}).get("checkpoint")
    if not checkpoint or not (Path(checkpoint) / "config.json").exists():
        raise CandidateError(f"experiment #{index} has no checkpoint to evaluate (train.checkpoint = {checkpoint!r})")
    payload = job.get("payload") or {}
    tier = tier_of(payload.get("fidelity", experiment.get("fidelity", "smoke")))
    cache = Path(os.environ.get("RUN_DIR", "runs/default")) / "cache"
    device = os.environ.get("EVALUATOR_DEVICE", "cpu")
    started = time.process_time()
    try:
        scores = await asyncio.to_thread(evaluate_checkpoint, checkpoint, tier, limit=payload.get("eval_limit"),
                                         cache_dir=cache, device=device, progress=False)
    except (ValueError, RuntimeError) as err:
        # The checkpoint loads but its program fails or yields non-finite scores: the candidate's fault.
        raise CandidateError(f"evaluation failed: {err}") from err
    costs = {"cpu_seconds": time.process_time() - started}
    if device.startswith("cuda"):
        costs["gpu_seconds"] = scores["wall_s"]
    await client.update_experiment(index, eval=scores, status="evaluated", costs=costs)
    log.info("evaluated #%s: average %s, recall %s", index, scores["average"], scores["recall"])
    return {"experiment": index, "average": scores["average"], "recall": scores["recall"]}


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
