"""Concurrent trainings on one CPU: every run taking all cores (the old default) against claimed cores.

    python benchmarks/thread_sharing.py                       # 2 trainings at once, 3 rounds, smoke, 40 steps
    python benchmarks/thread_sharing.py --stress 2 --rounds 2 # with 2 busy-loop processes holding cores too

Each round trains the seed program N times at once (`--concurrent`, default 2), each in its sandbox as
the trainer worker runs it, once per policy, in alternating order:

- `all-cores`: every run gets as many torch threads as the machine has cores (the old default);
- `claimed`:   every run takes its threads from `trainer.cores.claimed_cores` (the ledger, idle cores).

Prints each run's training throughput (tokens/s, from the run's own timer) as mean ± SE over runs and
rounds per policy, their ratio measured in the same invocation, and the wall time of each round.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from database.stats import mean_se  # noqa: E402
from trainer.cores import available_cores, claimed_cores  # noqa: E402
from trainer.fidelity import get_fidelity, parse_overrides  # noqa: E402
from trainer.layers import seed_program  # noqa: E402
from trainer.replicates import sandboxed_training  # noqa: E402
from trainer.train import load_data  # noqa: E402

POLICIES = ("all-cores", "claimed")


def spin() -> None:
    while True:
        pass


def train(policy: str, seed: int, fidelity, overrides: dict, cache: Path, workdir: Path) -> tuple[int, float]:
    """(threads, tokens/s) of one training under POLICY."""
    hold = contextlib.nullcontext(available_cores()) if policy == "all-cores" else claimed_cores()
    with hold as threads:
        sandbox = sandboxed_training(seed_program(), fidelity, overrides, seed=seed, device="cpu", cache=cache,
                                     workdir=workdir / f"{policy}-{seed}", threads=threads)
    result = sandbox.result or {}
    if not sandbox.ok or result.get("status") != "ok":
        raise SystemExit(f"training failed under {policy}: {result.get('reason') or sandbox.reason}")
    return threads, float(result["tokens_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrent", type=int, default=2, help="trainings at once (default 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stress", type=int, default=0, help="busy-loop processes running throughout")
    parser.add_argument("--fidelity", default="smoke")
    parser.add_argument("--set", nargs="*", default=["steps=40"], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    os.environ.pop("TRAINER_THREADS", None)  # the policies decide
    overrides = parse_overrides(args.set)
    fidelity = get_fidelity(args.fidelity, overrides)
    cache = Path(os.environ.get("RUN_DIR", ROOT / "runs" / "default")) / "cache"
    load_data(fidelity, cache)
    stress = [mp.Process(target=spin, daemon=True) for _ in range(args.stress)]
    for process in stress:
        process.start()
    print(f"{args.concurrent} trainings at once on {available_cores()} cores, {args.stress} busy loops, "
          f"fidelity {fidelity.name} ({fidelity.steps} steps), {args.rounds} rounds", flush=True)
    speeds: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    try:
        with tempfile.TemporaryDirectory(prefix="thread-sharing-") as scratch:
            for round_ in range(args.rounds):
                order = POLICIES if round_ % 2 == 0 else POLICIES[::-1]
                for policy in order:
                    started = time.monotonic()
                    with ThreadPoolExecutor(args.concurrent) as pool:
                        jobs = [pool.submit(train, policy, seed, fidelity, overrides, cache, Path(scratch))
                                for seed in range(args.concurrent)]
                        runs = [job.result() for job in jobs]
                    speeds[policy] += [speed for _, speed in runs]
                    print(f"round {round_ + 1} {policy:<9} threads {[t for t, _ in runs]} tokens/s "
                          f"{[round(s) for _, s in runs]} wall {time.monotonic() - started:.1f} s", flush=True)
    finally:
        for process in stress:
            process.terminate()
    stats = {policy: mean_se(values) for policy, values in speeds.items()}
    for policy, s in stats.items():
        print(f"{policy:<9} {s['mean']:8.0f} ± {s['se']:.0f} tokens/s per training (n={s['n']})")
    print(f"claimed / all-cores: {stats['claimed']['mean'] / stats['all-cores']['mean']:.2f}x per training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
