"""One program, end to end, by hand: the services' checks, training, evaluation and fitness, no database.

    python -m agent.trial my_layer.py --fidelity smoke --seeds 3 --out trial.json
    python -m agent.trial attack.py --fidelity smoke --seeds 1 --set steps=40 --no-baseline

The program goes through exactly what a candidate goes through in a run, in the same sandboxes: the
static and dynamic checks and the trusted leak check (agent.checks), training of each seed in its own
sandbox (trainer.replicates), sealing and trusted measurement of the weights (trainer.trusted), an
evaluation per seed in a fresh sandboxed model server (evaluator.worker), the quarantine rule
(agent.quarantine) with its re-run, and fitness against the seed program trained the same way (cached
under RUN_DIR/trial-baselines/). OUT.json holds trusted numbers only:

    {"status": "accepted" | "rejected" | "quarantined" | "failed", "stage", "reason", "val_loss",
     "scores", "fitness", ...}

A researcher uses it to try a layer; tests and reviewers use it to try an attack.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from trainer.cli import Parser, device_name, existing_file, fidelity_name, guard, key_value, positive_int


class Stop(Exception):
    """The trial ends at a stage: (status, stage, reason)."""

    def __init__(self, status: str, stage: str, reason: str):
        super().__init__(reason)
        self.status, self.stage, self.reason = status, stage, reason


def check(program: str, fidelity, workdir: Path) -> dict:
    from agent.checks import check_program

    report = check_program(program, fidelity, workdir)
    if not report["ok"]:
        failed = [c for c in report["checks"] if c.get("hard") and not c["ok"]]
        detail = failed[0]["detail"] if failed else "; ".join(e["message"] for e in report["static"]["errors"][:3])
        raise Stop("rejected", "checks", f"{', '.join(report['failed'])}: {detail}"[:1500])
    return report


def train(program: str, fidelity, overrides: dict, seeds: list[int], device: str, workdir: Path,
          index: int) -> dict:
    """Train and measure every seed; the merged record of trusted numbers."""
    from database.worker import CandidateError
    from trainer.replicates import first_failure, merge_runs, train_seeds
    from trainer.train import load_data
    from trainer.worker import run_dir, seal_and_measure

    cache = run_dir() / "cache"
    load_data(fidelity, cache)
    stop = threading.Event()
    runs = train_seeds(program, fidelity, overrides, seeds=seeds, device=device, cache=cache,
                       workdir=workdir, stop=stop)
    failure = first_failure(runs)
    if failure is not None:
        seed, reason, _ = failure
        raise Stop("failed", "train", f"{reason} (seed {seed})")
    home = run_dir() / "checkpoints" / f"trial-{index}"
    try:
        results = seal_and_measure(program, fidelity, runs, home=home, workdir=workdir, device=device, stop=stop)
    except CandidateError as err:
        status = "rejected" if str(err).startswith("rejected") else "failed"
        raise Stop(status, "trusted measurement", str(err)) from err
    record = merge_runs(results)
    record["checkpoints"] = [r["checkpoint"] for r in results]
    return record


def evaluate(record: dict, fidelity, device: str, workdir: Path, limit: int | None = None) -> dict:
    from database.worker import CandidateError
    from evaluator.evaluate import default_cache_dir
    from evaluator.replicated import merge_evaluations
    from evaluator.worker import evaluate_candidate

    checkpoints = [Path(r) for r in record["checkpoints"]]
    try:
        per_seed = [evaluate_candidate(c, fidelity.name, limit=limit, cache_dir=default_cache_dir(), device=device,
                                       workdir=workdir / f"eval-{i}") for i, c in enumerate(checkpoints)]
    except CandidateError as err:
        raise Stop("failed", "evaluate", str(err)) from err
    return merge_evaluations(per_seed)


def measure(program: str, fidelity, overrides: dict, seeds: list[int], device: str, workdir: Path,
            index: int = 1, limit: int | None = None) -> dict:
    """Checks, training and evaluation: an experiment-like record {train, eval, check}."""
    started = time.monotonic()
    report = check(program, fidelity, workdir / "check")
    checked = time.monotonic()
    record = train(program, fidelity, overrides, seeds, device, workdir / "train", index)
    trained = time.monotonic()
    evaluation = evaluate(record, fidelity, device, workdir / "eval", limit)
    seconds = {"checks": checked - started, "train": trained - checked, "evaluate": time.monotonic() - trained}
    return {"index": index, "train": record, "eval": evaluation, "check": report, "seconds": seconds}


def baseline(fidelity, overrides: dict, seeds: list[int], device: str, workdir: Path,
             limit: int | None = None) -> dict:
    """The seed program measured the same way, cached by fidelity, overrides and seeds."""
    from trainer.layers import seed_program
    from trainer.worker import run_dir

    key = hashlib.sha256(json.dumps([fidelity.name, overrides, seeds, device, limit], sort_keys=True).encode()).hexdigest()
    path = run_dir() / "trial-baselines" / f"{fidelity.name}-{key[:12]}.json"
    if path.exists():
        return json.loads(path.read_text())
    record = {**measure(seed_program(), fidelity, overrides, seeds, device, workdir / "baseline", index=0, limit=limit),
              "is_baseline": True}
    record.pop("check", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def score(experiment: dict, base: dict, calibration: dict | None) -> dict:
    from database.fitness import FitnessSettings, beats_baseline, combine, evidence, fitness_parts, seed_noise

    settings = FitnessSettings()
    noise = seed_noise(calibration)
    parts = fitness_parts(experiment, base, None, settings, noise)
    found = evidence(experiment, base, noise)
    return {"fitness": combine(parts, settings), "fitness_parts": parts, "evidence": found,
            "beats_baseline": beats_baseline(found, settings)}


def shipped_calibration(fidelity: str) -> dict | None:
    from agent.ladder import SHIPPED_CALIBRATIONS

    path = SHIPPED_CALIBRATIONS / f"{fidelity}.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_trial(program: str, fidelity, overrides: dict, seeds: list[int], *, device: str = "cpu",
              workdir: Path, with_baseline: bool = True, margin: float = 0.1, limit: int | None = None) -> dict:
    from agent.quarantine import RERUN_SEED, suspicion

    outcome = {"status": "accepted", "stage": None, "reason": None, "val_loss": None, "scores": None,
               "fitness": None, "fidelity": fidelity.name, "seeds": seeds}
    try:
        experiment = measure(program, fidelity, overrides, seeds, device, workdir / "candidate", limit=limit)
        base = baseline(fidelity, overrides, seeds, device, workdir, limit) if with_baseline else None
        calibration = shipped_calibration(fidelity.name)
        reason = suspicion(experiment, base, calibration, margin=margin) if base else None
        if reason:
            # Held back until fresh seeds, trained and measured in fresh sandboxes, give the same verdict.
            outcome["quarantine"] = {"reason": reason, "first_val_loss": experiment["train"].get("val_loss")}
            fresh = [RERUN_SEED + i for i in range(len(seeds))]
            try:
                experiment = measure(program, fidelity, overrides, fresh, device, workdir / "rerun", limit=limit)
            except Stop as stop:
                raise Stop("quarantined", f"quarantine re-run: {stop.stage}",
                           f"{reason}; re-run: {stop.reason}") from stop
        outcome.update(val_loss=experiment["train"].get("val_loss"), val_loss_stats=experiment["train"].get(
            "val_loss_stats"), claimed_val_loss=experiment["train"].get("claimed_val_loss"),
            scores=experiment["eval"], seconds=experiment["seconds"])
        if base:
            outcome.update(score(experiment, base, calibration), baseline_val_loss=base["train"].get("val_loss"))
    except Stop as stop:
        outcome.update(status=stop.status, stage=stop.stage, reason=stop.reason)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("program", type=existing_file, help="a layer program (.py)")
    parser.add_argument("--fidelity", default="smoke", type=fidelity_name)
    parser.add_argument("--seeds", type=positive_int, default=None, help="training seeds (default: the fidelity's replicates)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value, help="fidelity overrides")
    parser.add_argument("--device", default="cpu", type=device_name)
    parser.add_argument("--no-baseline", action="store_true", help="skip the seed baseline (no fitness)")
    parser.add_argument("--limit", type=positive_int, default=None, help="examples per benchmark task (default: the tier's)")
    parser.add_argument("--margin", type=float, default=0.1, help="quarantine margin (relative loss improvement)")
    parser.add_argument("--out", type=Path, default=None, help="write the outcome here as JSON")
    args = parser.parse_args(argv)

    from trainer.fidelity import get_fidelity, parse_overrides

    try:
        overrides = parse_overrides(args.set)
        fidelity = get_fidelity(args.fidelity, overrides)
    except ValueError as err:
        parser.error(str(err))
    seeds = list(range(args.seeds or fidelity.replicates))
    os.environ.setdefault("RUN_DIR", "runs/trial")
    from trainer.worker import run_dir

    workdir = run_dir() / "sandbox" / f"trial-{int(time.time())}-{os.getpid()}"
    from trainer.jail import SandboxUnavailable

    try:
        outcome = run_trial(args.program.read_text(), fidelity, overrides, seeds, device=args.device,
                            workdir=workdir, with_baseline=not args.no_baseline, margin=args.margin,
                            limit=args.limit)
    except SandboxUnavailable as err:
        print(f"trial: {err}", file=sys.stderr)
        return 2
    text = json.dumps(outcome, indent=1, default=str)
    if args.out:
        args.out.write_text(text)
    summary = {k: outcome.get(k) for k in ("status", "stage", "reason", "val_loss", "fitness")}
    print(json.dumps(summary, indent=1))
    return 0 if outcome["status"] == "accepted" else 1


if __name__ == "__main__":
    raise SystemExit(guard(main))
