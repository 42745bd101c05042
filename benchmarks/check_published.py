"""Run the engineer's checks over the published ASI-Arch programs.

    python benchmarks/check_published.py                       # all 106, 3 at a time, smoke fidelity
    python benchmarks/check_published.py --jobs 2 --out runs/check_published.json --limit 10

Each program is checked in its own sandboxed child (`agent.checks.check_program`), several at once.
Prints one row per program as it finishes (name, ok, failed checks, flags, seconds), then totals and
the most common failures; `--out` writes every report as JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.checks import check_program, check_summary  # noqa: E402
from trainer.fidelity import get_fidelity  # noqa: E402

DEFAULT_PATH = ROOT.parent / "shared" / "asi-arch" / "architectures_106.json"


def check_one(name: str, program: str, fidelity, scratch: Path, timeout_s: float, options: dict) -> dict:
    started = time.monotonic()
    report = check_program(program, fidelity, scratch / name, timeout_s=timeout_s, **options)
    first = lambda n: next((c for c in report["checks"] if c["name"] == n), {})  # noqa: E731
    return {"name": name, "ok": report["ok"], "failed": report["failed"], "flagged": report["flagged"],
            "seconds": round(time.monotonic() - started, 1), "params_per_layer": report["params_per_layer"],
            "exponent": first("cost_growth").get("exponent"), "summary": check_summary(report), "report": report}


def row(result: dict) -> str:
    failed = ",".join(result["failed"]) or "-"
    flagged = ",".join(result["flagged"]) or "-"
    params = f"{result['params_per_layer']:,}" if result["params_per_layer"] is not None else "-"
    exponent = f"{result['exponent']:.2f}" if result["exponent"] is not None else "-"
    return (f"{result['name'][:44]:<44} {'yes' if result['ok'] else 'NO':<4} {failed:<22} {flagged:<12} "
            f"{params:>9} {exponent:>5} {result['seconds']:>6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="architectures JSON (a list of programs)")
    parser.add_argument("--jobs", type=int, default=3, help="programs checked at once")
    parser.add_argument("--fidelity", default="smoke")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per program")
    parser.add_argument("--limit", type=int, default=None, help="only the first N programs")
    parser.add_argument("--autocast", choices=["bfloat16"], default=None,
                        help="run the layers under bfloat16 autocast, as GPU training does (default: the fidelity's)")
    parser.add_argument("--out", type=Path, default=None, help="write the reports here as JSON")
    args = parser.parse_args(argv)

    entries = json.loads(args.path.read_text())[:args.limit]
    fidelity = get_fidelity(args.fidelity)
    options = {"autocast": args.autocast} if args.autocast else {}
    print(f"checking {len(entries)} programs from {args.path} at fidelity {fidelity.name}"
          f"{' under ' + args.autocast + ' autocast' if args.autocast else ''}, {args.jobs} at a time",
          flush=True)
    print(f"{'name':<44} {'ok':<4} {'failed':<22} {'flagged':<12} {'params':>9} {'T^x':>5} {'s':>6}", flush=True)
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="check-published-") as scratch, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(check_one, e["name"], e["program"], fidelity, Path(scratch), args.timeout, options)
                   for e in entries]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            print(row(result), flush=True)
    results.sort(key=lambda r: r["name"])
    passed = sum(r["ok"] for r in results)
    reasons = collections.Counter(name for r in results for name in r["failed"])
    flags = collections.Counter(name for r in results for name in r["flagged"])
    wall = time.monotonic() - started
    print(f"\n{passed} of {len(results)} pass; {len(results) - passed} fail; wall {wall:.0f} s, "
          f"{sum(r['seconds'] for r in results):.0f} s of checks")
    print("failed checks: " + (", ".join(f"{n} x{c}" for n, c in reasons.most_common()) or "none"))
    print("flags: " + (", ".join(f"{n} x{c}" for n, c in flags.most_common()) or "none"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        totals = {"programs": len(results), "passed": passed, "failed_checks": dict(reasons), "flags": dict(flags),
                  "wall_s": round(wall, 1), "fidelity": fidelity.name, "autocast": args.autocast}
        args.out.write_text(json.dumps({"totals": totals, "results": results}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
