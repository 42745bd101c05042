"""Train a fixed sample of the published ASI-Arch programs at smoke scale on a CPU, unchanged.

    python benchmarks/published_smoke.py                      # the 20 sampled programs, 2 at a time
    python benchmarks/published_smoke.py --jobs 1 --set steps=60 --json runs/published_smoke.json
    python benchmarks/published_smoke.py --set dtype=auto --positions 97,62   # float32, two of them

The sample is `random.Random(0).sample(range(106), 20)` over `../shared/asi-arch/architectures_106.json`.
Each program trains in its own sandboxed child (`trainer.replicates.sandboxed_training`, around
`python -m trainer.train`), exactly as the trainer worker runs candidates, on the CPU stand-ins for fla,
and its weights are then sealed and measured by the trusted side (`trainer.worker.seal_and_measure`)
as a candidate's are. Prints one row per program as it finishes (position in the file, name, status,
validation loss start -> end as the trusted side measures it, the run's own claim, seconds, reason),
then totals. Exit status 0 when every program trained.

Training runs under bfloat16 autocast by default (`dtype=bfloat16`), the precision the programs were
written for: ASI-Arch trained them so on GPUs, and about a third cast tensors to bfloat16 themselves,
which fails in plain float32 ("expected scalar type Float but found BFloat16").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from database.worker import CandidateError  # noqa: E402
from trainer.fidelity import get_fidelity, parse_overrides  # noqa: E402
from trainer.replicates import sandboxed_training  # noqa: E402
from trainer.train import load_data  # noqa: E402
from trainer.worker import seal_and_measure  # noqa: E402

DEFAULT_PATH = ROOT.parent / "shared" / "asi-arch" / "architectures_106.json"
SAMPLE_SEED, SAMPLE_SIZE = 0, 20


def sample_indices(total: int, size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> list[int]:
    return random.Random(seed).sample(range(total), min(size, total))


def train_one(position: int, entry: dict, fidelity, overrides: dict, cache: Path, scratch: Path, threads: int,
              timeout_s: float) -> dict:
    workdir = scratch / f"{position:03d}-{entry['name']}"
    started = time.monotonic()
    sandbox = sandboxed_training(entry["program"], fidelity, overrides, seed=0, device="cpu", cache=cache,
                                 workdir=workdir / "seed-0", threads=threads, timeout_s=timeout_s)
    result = sandbox.result or {}
    ok = sandbox.ok and result.get("status") == "ok"
    reason = None if ok else (result.get("reason") or sandbox.reason or "no result")
    claimed = result.get("val_loss")
    if ok:
        try:
            [result] = seal_and_measure(entry["program"], fidelity, [(0, sandbox)], home=workdir / "sealed",
                                        workdir=workdir, device="cpu", cache=cache)
        except CandidateError as err:
            ok, reason, result = False, str(err), {**result, "status": "refused"}
    return {"position": position, "index": entry.get("index"), "name": entry["name"],
            "status": "ok" if ok else (result.get("status") or "failed"),
            "val_loss_start": result.get("val_loss_start"), "val_loss": result.get("val_loss") if ok else None,
            "claimed_val_loss": claimed, "judge_s": result.get("judge_s"),
            "seconds": round(time.monotonic() - started, 1), "reason": reason,
            "traceback": result.get("traceback") or (None if ok else sandbox.stderr_tail[-3000:])}


def _loss(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def row(r: dict) -> str:
    losses = f"{_loss(r['val_loss_start'])} -> {_loss(r['val_loss'])}"
    reason = (r["reason"] or "").splitlines()[0][:90] if r["reason"] else ""
    return (f"{r['position']:>4} {r['name'][:40]:<40} {r['status']:<7} {losses:<16} {_loss(r['claimed_val_loss']):>7} "
            f"{r['seconds']:>7.1f}  {reason}")


def run(path: Path, *, jobs: int, fidelity_name: str, overrides: dict, cache: Path, timeout_s: float | None,
        limit: int | None = None, positions: list[int] | None = None, out=sys.stdout) -> dict:
    entries = json.loads(Path(path).read_text())
    positions = (positions or sample_indices(len(entries)))[:limit]
    fidelity = get_fidelity(fidelity_name, overrides)
    timeout_s = timeout_s or fidelity.timeout_s
    load_data(fidelity, cache)  # tokenise once, outside the sandboxes, which only read it
    threads = max(1, (os.cpu_count() or 1) // jobs)
    os.environ.setdefault("TRAINER_THREADS", str(threads))  # the trusted measurement's model server too
    print(f"training {len(positions)} published programs from {path} at fidelity {fidelity.name} "
          f"({fidelity.steps} steps, overrides {overrides or 'none'}), {jobs} at a time, {threads} threads each",
          file=out, flush=True)
    print(f"{'#':>4} {'name':<40} {'status':<7} {'val loss':<16} {'claim':>7} {'s':>7}  reason", file=out, flush=True)
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="published-smoke-") as scratch, ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(train_one, p, entries[p], fidelity, overrides, cache, Path(scratch), threads,
                               timeout_s) for p in positions]
        for future in as_completed(futures):
            results.append(future.result())
            print(row(results[-1]), file=out, flush=True)
    results.sort(key=lambda r: positions.index(r["position"]))
    passed = [r for r in results if r["status"] == "ok"]
    improved = [r for r in passed if r["val_loss"] < r["val_loss_start"]]
    totals = {"programs": len(results), "passed": len(passed), "failed": len(results) - len(passed),
              "loss_decreased": len(improved), "wall_s": round(time.monotonic() - started, 1),
              "fidelity": fidelity.name, "steps": fidelity.steps, "overrides": overrides}
    print(f"\n{totals['passed']}/{totals['programs']} trained ({totals['loss_decreased']} with a lower validation "
          f"loss), {totals['failed']} failed, in {totals['wall_s']:.0f} s", file=out, flush=True)
    for r in results:
        if r["status"] != "ok":
            print(f"\n--- {r['position']} {r['name']}: {r['reason']}\n{(r['traceback'] or '')[-1500:]}",
                  file=out, flush=True)
    return {"totals": totals, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="architectures JSON (a list of programs)")
    parser.add_argument("--jobs", type=int, default=2, help="programs trained at once")
    parser.add_argument("--fidelity", default="smoke")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override fidelity fields")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per program (default: the fidelity's)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N of the sample")
    parser.add_argument("--positions", default=None,
                        help="comma-separated positions in the file to train instead of the sample")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("RUN_DIR", ROOT / "runs" / "default")) / "cache")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if not args.path.exists():
        print(f"no published programs at {args.path}; nothing to do", file=sys.stderr)
        return 2
    positions = [int(p) for p in args.positions.split(",")] if args.positions else None
    report = run(args.path, jobs=max(1, args.jobs), fidelity_name=args.fidelity,
                 overrides={"dtype": "bfloat16", **parse_overrides(args.set)}, cache=args.cache.resolve(),
                 timeout_s=args.timeout, limit=args.limit, positions=positions)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["totals"]["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
