"""The seed scored against itself: how often noise alone would crown a candidate.

    python benchmarks/self_parity.py                         # synthetic rung, 15 seeds, 10 comparisons
    python benchmarks/self_parity.py --fidelity smoke --pool 12 --comparisons 10 --json runs/parity.json
    python benchmarks/self_parity.py --fidelity smoke --runs runs/parity.json   # score those runs again

Trains the seed DeltaNet with seeds 0..POOL-1 (sandboxed, as candidates train), evaluates every
checkpoint, then draws COMPARISONS disjoint pairs of seed triples: one triple plays the baseline, the
other a candidate with the same program. Each pair is scored with the project's fitness (the noise
rule of database/fitness.py, default settings, no judge, the standard errors floored at the seed spread
of the rung's shipped calibration). A sound rule gives fitness near 0.5 and
"beats the baseline" false every time. Triples are drawn from one pool of runs, so comparisons
share runs; each comparison's two triples never do.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.calibrate import calibrate_program  # noqa: E402
from agent.ladder import SHIPPED_CALIBRATIONS, local_calibrations  # noqa: E402
from database.fitness import (  # noqa: E402
    FitnessSettings,
    beats_baseline,
    combine,
    evidence,
    fitness_parts,
    seed_noise,
)
from database.stats import mean_se  # noqa: E402
from trainer.fidelity import get_fidelity, parse_overrides  # noqa: E402
from trainer.layers import SEED_PROGRAM  # noqa: E402
from trainer.train import load_data  # noqa: E402


def record(runs: list[dict]) -> dict:
    loss, bench = mean_se([r["val_loss"] for r in runs]), mean_se([r["benchmark"] for r in runs])
    return {"train": {"val_loss": loss["mean"], "val_loss_stats": loss},
            "eval": {"average": bench["mean"], "recall": bench["mean"], "benchmark_stats": bench}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fidelity", default="synthetic")
    parser.add_argument("--pool", type=int, default=15, help="seeds trained (default 15)")
    parser.add_argument("--comparisons", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None, help="write the runs and comparisons here")
    parser.add_argument("--runs", type=Path, default=None,
                        help="score the runs of an earlier --json file again instead of training")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    fidelity = get_fidelity(args.fidelity, overrides)
    if args.runs:
        runs = json.loads(args.runs.read_text())["runs"]
        print(f"{fidelity.name}: {len(runs)} runs read from {args.runs}")
    else:
        work = Path(tempfile.mkdtemp(prefix="parity-"))
        cache = Path(os.environ.get("RUN_DIR", "runs/default")) / "cache"
        load_data(fidelity, cache)
        trained = calibrate_program("seed", SEED_PROGRAM, fidelity, overrides, list(range(args.pool)), work, cache)
        if trained["status"] != "ok":
            print(f"training failed: {trained['reason']}")
            return 1
        runs = trained["per_seed"]
        print(f"{fidelity.name}: {args.pool} seeds trained in {trained['seconds']:.0f} s")
    if len(runs) < 6:
        parser.error("at least 6 runs are needed: two disjoint triples per comparison")
    # The pipeline's rule: default settings, each side's SE floored at the rung's calibrated seed spread.
    calibration = next((r for r in local_calibrations(SHIPPED_CALIBRATIONS) if r["fidelity"] == fidelity.name), None)
    noise = seed_noise(calibration)
    settings = FitnessSettings(weight_judge=0)
    print(f"seed-spread floor from the shipped calibration: {noise or 'none'}")
    rows = []
    print(f"{'#':>2}  {'baseline seeds':<14}  {'candidate':<12}  {'d loss':>8}  {'SE':>7}  {'d bench':>8}  {'SE':>7}  "
          f"{'fitness':>7}  beats")
    for k in range(args.comparisons):
        six = random.Random(k).sample(range(len(runs)), 6)
        base, cand = record([runs[i] for i in six[:3]]), record([runs[i] for i in six[3:]])
        parts = fitness_parts(cand, base, None, settings, noise)
        found = evidence(cand, base, noise)
        row = {"baseline_seeds": six[:3], "candidate_seeds": six[3:], "fitness": combine(parts, settings),
               "beats": beats_baseline(found, settings), "evidence": found}
        rows.append(row)
        print(f"{k:>2}  {str(six[:3]):<14}  {str(six[3:]):<12}  {found['loss']['difference']:+8.4f}  "
              f"{found['loss']['se']:7.4f}  {found['benchmark']['difference']:+8.4f}  {found['benchmark']['se']:7.4f}  "
              f"{row['fitness']:7.3f}  {'yes' if row['beats'] else 'no'}")
    fitness = mean_se([r["fitness"] for r in rows])
    spread = max(abs(r["fitness"] - 0.5) for r in rows)
    print(f"fitness {fitness['mean']:.3f} ± {fitness['se']:.3f} (largest distance from 0.5: {spread:.3f}); "
          f"beats the baseline in {sum(r['beats'] for r in rows)} of {len(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"fidelity": fidelity.name, "runs": runs, "comparisons": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
