"""Calibrate a fidelity: train known layers with several seeds and measure how well the rung ranks them.

    python -m agent.calibrate --fidelity synthetic                  # the reference panel, 3 seeds
    python -m agent.calibrate --fidelity smoke --programs my_layers/ --seeds 2 --out smoke.json
    python -m agent.calibrate --fidelity synthetic --rescore synthetic.json   # new task weights, no training

Each program trains in the sandbox with every seed, exactly as a candidate would (same children,
same evaluation), and gets a score per seed where higher is better: the mean task accuracy at the
`synthetic` rung, minus the validation loss at language-model rungs. Printed: a table of mean ± SE
per program and task with seconds spent; the Spearman correlation of the means with the order the
literature expects (panel members only); the seed-to-seed rank correlation; and the correlation with
every other rung calibrated in the same folder. Written: FILE.json, a plot beside it, and, with
`--api`, the record in the candidate API, where the pipeline reads it to warn about a rung that has
not earned its place.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from database.fitness import benchmark_score
from database.stats import mean_se, spearman
from trainer.cli import Parser, UsageError, fidelity_name, guard, key_value, positive_int
from trainer.cores import available_cores
from trainer.fidelity import FIDELITIES, get_fidelity, parse_overrides
from trainer.panel import expected_tier, panel_programs

# A rung whose ranking correlates less than this with the expected order has not earned its place.
EARNED_SPEARMAN = 0.5


def default_out(fidelity: str) -> Path:
    return Path(os.environ.get("RUN_DIR", "runs/default")) / "calibration" / f"{fidelity}.json"


def programs_in(directory: Path | None) -> dict[str, Path]:
    if directory is None:
        return panel_programs()
    if not directory.is_dir():
        raise UsageError(f"--programs {directory}: no such directory of layer programs (*.py)")
    found = {path.stem: path for path in sorted(directory.glob("*.py")) if not path.name.startswith("_")}
    if not found:
        raise UsageError(f"--programs {directory}: no *.py layer programs there")
    return found


def score_of(fidelity_name: str, evaluation: dict | None, val_loss: float | None) -> float | None:
    """Higher is better: task accuracy at the synthetic rung, -validation loss at language-model rungs."""
    if fidelity_name == "synthetic":
        return (evaluation or {}).get("average")
    return None if val_loss is None else -val_loss


def calibrate_program(name: str, path: Path, fidelity, overrides: dict, seeds: list[int], workdir: Path,
                      cache: Path, cores: int | None = None) -> dict:
    """Train and evaluate one program with every seed; its record for the calibration file."""
    from database.worker import CandidateError
    from evaluator.evaluate import default_cache_dir
    from evaluator.worker import evaluate_candidate
    from trainer.replicates import first_failure, train_seeds
    from trainer.worker import seal_and_measure

    started = time.monotonic()
    program = path.read_text()
    runs = train_seeds(program, fidelity, overrides, seeds=seeds, device="cpu", cache=cache,
                       workdir=workdir / name, cores=cores)
    failure = first_failure(runs)
    if failure is not None:
        return {"status": "failed", "reason": f"seed {failure[0]}: {failure[1]}", "seconds": time.monotonic() - started}
    try:  # the same trusted numbers as a candidate's: sealed weights, loss from logits in this process
        results = seal_and_measure(program, fidelity, runs, home=workdir / name / "sealed", workdir=workdir / name,
                                   device="cpu", cache=cache)
    except CandidateError as err:
        return {"status": "failed", "reason": str(err), "seconds": time.monotonic() - started}
    scores, tasks, per_seed = [], {}, []
    for result in results:
        seed = result["seed"]
        evaluation = evaluate_candidate(Path(result["checkpoint"]), fidelity.eval_tier, limit=None,
                                        cache_dir=default_cache_dir(), device="cpu",
                                        workdir=workdir / name / f"eval-{seed}")
        scores.append(score_of(fidelity.name, evaluation, result.get("val_loss")))
        per_seed.append({"seed": seed, "val_loss": result.get("val_loss"), "benchmark": benchmark_score(evaluation),
                         "threads": result.get("threads")})
        tasks.setdefault("val_loss", []).append(result.get("val_loss"))
        for task, value in (evaluation.get("tasks") or {}).items():
            tasks.setdefault(task, []).append(value.get("value"))
    return {"status": "ok", "tier": expected_tier(name), "score": mean_se(scores),
            "tasks": {task: mean_se(values) for task, values in tasks.items()}, "per_seed": per_seed,
            "seconds": time.monotonic() - started}


def rescore(record: dict) -> dict:
    """The synthetic rung's record with each seed's score recomputed from its task accuracies under the current
    task weights (trainer.synthetic.score_weights): a change of weights needs no training."""
    from trainer.synthetic import combined_score, score_weights, scored_tasks

    weights, tasks_scored = score_weights(), scored_tasks()
    names = [task.name for task in tasks_scored]
    recall_names = [task.name for task in tasks_scored if task.recall]
    for program in record["programs"].values():
        if program.get("status") != "ok":
            continue
        tasks = program["tasks"]
        missing = [name for name in names if name not in tasks]
        if missing:
            raise ValueError(f"cannot rescore: the record has no per-seed accuracies of {missing}")
        seeds = range(len(program["per_seed"]))
        scores = [combined_score({name: tasks[name]["per_seed"][i] for name in names}, weights) for i in seeds]
        program["score"] = mean_se(scores)
        for i, run in zip(seeds, program["per_seed"], strict=True):
            # The fitness's benchmark part (database.fitness.benchmark_score): the score and the recall mean.
            recall = sum(tasks[name]["per_seed"][i] for name in recall_names) / len(recall_names)
            run["benchmark"] = (scores[i] + recall) / 2
    record["score_weights"] = weights
    record.update(rank_statistics(record["programs"], record["seeds"]))
    return record


def rank_statistics(programs: dict[str, dict], seeds: int) -> dict:
    """Spearman with the expected order (panel members) and between seeds (mean over pairs of seeds)."""
    ok = {n: p for n, p in programs.items() if p["status"] == "ok" and p["score"]}
    panel = [n for n in ok if expected_tier(n) is not None]
    expected = spearman([ok[n]["score"]["mean"] for n in panel], [-expected_tier(n) for n in panel])
    pairs = []
    for i, j in itertools.combinations(range(seeds), 2):
        a = [ok[n]["score"]["per_seed"][i] for n in ok]
        b = [ok[n]["score"]["per_seed"][j] for n in ok]
        if None not in a and None not in b and (rho := spearman(a, b)) is not None:
            pairs.append(rho)
    return {"spearman_expected": expected, "spearman_seeds": sum(pairs) / len(pairs) if pairs else None}


def cross_rung(record: dict, folder: Path) -> dict[str, float | None]:
    """Spearman between this rung's program means and each other rung calibrated in FOLDER."""
    found = {}
    for other in sorted(folder.glob("*.json")):
        try:
            data = json.loads(other.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("fidelity") in (None, record["fidelity"]):
            continue
        common = [n for n, p in record["programs"].items() if p.get("score")
                  and (data.get("programs", {}).get(n) or {}).get("score")]
        found[data["fidelity"]] = spearman([record["programs"][n]["score"]["mean"] for n in common],
                                           [data["programs"][n]["score"]["mean"] for n in common])
    return found


def _pm(stats: dict | None, digits: int = 3) -> str:
    return "-" if not stats else f"{stats['mean']:.{digits}f} ± {stats['se']:.{digits}f}"


def table(record: dict) -> str:
    programs = record["programs"]
    tasks = sorted({t for p in programs.values() for t in (p.get("tasks") or {})}, key=lambda t: (t != "val_loss", t))
    header = ["program", "tier", "score", *tasks, "seconds"]
    rows = [header]
    for name, p in programs.items():
        if p["status"] != "ok":
            rows.append([name, str(p.get("tier") or "-"), f"failed: {p['reason'][:60]}"] + [""] * (len(tasks) + 1))
            continue
        rows.append([name, str(p.get("tier") or "-"), _pm(p["score"]), *[_pm(p["tasks"].get(t), 2) for t in tasks],
                     f"{p['seconds']:.0f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(record: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, p in record["programs"].items() if p["status"] == "ok"]
    means = [record["programs"][n]["score"]["mean"] for n in names]
    errors = [record["programs"][n]["score"]["se"] for n in names]
    tiers = [record["programs"][n].get("tier") or 0 for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4.5))
    colours = plt.get_cmap("viridis_r")([t / 7 for t in tiers])
    # Points, not bars: a score may be negative (minus a loss), and only differences matter.
    for x, (mean, error, colour) in enumerate(zip(means, errors, colours, strict=True)):
        ax.errorbar([x], [mean], yerr=[error], fmt="s", color=colour, markersize=9, capsize=5)
    for x, name in enumerate(names):  # every seed as a dot: a seed that never took off shows
        seeds = [v for v in record["programs"][name]["score"]["per_seed"] if v is not None]
        ax.plot([x + 0.15] * len(seeds), seeds, "k.", markersize=5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_xticks(range(len(names)), [f"{n}\n(tier {t})" if t else n for n, t in zip(names, tiers, strict=True)],
                  rotation=30, ha="right", fontsize=8)
    rho = record.get("spearman_expected")
    ax.set_ylabel("score (higher is better), mean ± SE over seeds")
    seeds_rho = record.get("spearman_seeds")
    ax.set_title(f"calibration of the {record['fidelity']} rung, {record['seeds']} seeds (dots)\n"
                 + (f"Spearman with the expected order {rho:.2f}" if rho is not None else "")
                 + (f", seed to seed {seeds_rho:.2f}" if seeds_rho is not None else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def store(record: dict, api: str, token: str | None) -> None:
    import httpx

    response = httpx.put(f"{api.rstrip('/')}/calibrations/{record['fidelity']}", json=record, timeout=30,
                         headers={"Authorization": f"Bearer {token}"} if token else {})
    response.raise_for_status()


def rescore_file(args, fidelity: str) -> int:
    try:
        record = json.loads(args.rescore.read_text())
        if fidelity != "synthetic" or record.get("fidelity") != "synthetic":
            raise ValueError("only a synthetic calibration has task weights to change (--fidelity synthetic)")
        record = rescore(record)
    except (OSError, json.JSONDecodeError, ValueError, KeyError, TypeError) as err:
        print(f"error: --rescore {args.rescore}: {err}", file=sys.stderr)
        return 2
    # Never over the file read by default: rescoring the shipped calibration must not rewrite it.
    return finish(record, args.out or default_out(fidelity), args)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--fidelity", required=True, type=fidelity_name, help=f"one of {sorted(FIDELITIES)}")
    parser.add_argument("--programs", type=Path, default=None, help="folder of layer programs (default: the panel)")
    parser.add_argument("--only", default=None, help="comma-separated panel members to train (default: all)")
    parser.add_argument("--seeds", type=positive_int, default=None, help="training seeds per program (default: the rung's)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default RUN_DIR/calibration/NAME.json)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                        help="override fidelity fields")
    parser.add_argument("--rescore", type=Path, default=None, metavar="FILE.json",
                        help="score an earlier synthetic calibration again under the current task weights "
                             "(SYNTHETIC_WEIGHTS), without training; writes --out (default RUN_DIR/calibration/synthetic.json)")
    parser.add_argument("--api", default=os.environ.get("API_URL"), help="candidate API to store the result in")
    parser.add_argument("--token", default=os.environ.get("API_TOKEN"))
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
        fidelity = get_fidelity(args.fidelity, overrides)
        programs = programs_in(args.programs)
        if args.only:
            # A subset of whichever programs were chosen (the panel's, or those of --programs).
            wanted = args.only.split(",")
            unknown = [n for n in wanted if n not in programs]
            if unknown:
                raise ValueError(f"--only {args.only}: unknown program(s) {unknown}; known: {sorted(programs)}")
            programs = {n: programs[n] for n in wanted}
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.rescore:
        return rescore_file(args, fidelity.name)
    seeds = list(range(args.seeds or fidelity.replicates))
    if not seeds:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    out = args.out or default_out(fidelity.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f"work-{fidelity.name}"
    cache = Path(os.environ.get("RUN_DIR", "runs/default")) / "cache"
    from trainer.train import load_data

    load_data(fidelity, cache)  # tokenise once, outside the sandboxes
    print(f"calibrating {fidelity.name}: {len(programs)} programs x {len(seeds)} seeds", flush=True)
    record = {"fidelity": fidelity.name, "seeds": len(seeds), "overrides": overrides, "programs": {}}
    # With fewer seeds than cores, several programs train at once: the cores stay busy either way.
    side_by_side = max(1, available_cores() // len(seeds))
    cores = max(1, available_cores() // side_by_side)
    done = {}
    with ThreadPoolExecutor(max_workers=side_by_side) as pool:
        futures = {pool.submit(calibrate_program, name, path, fidelity, overrides, seeds, work, cache, cores): name
                   for name, path in programs.items()}
        for future in as_completed(futures):
            name, result = futures[future], future.result()
            done[name] = result
            print(f"  {name:<18} {_pm(result.get('score'))}  ({result['seconds']:.0f} s)"
                  + (f"  {result['reason']}" if result["status"] != "ok" else ""), flush=True)
    record["programs"] = {name: done[name] for name in programs}
    record.update(rank_statistics(record["programs"], len(seeds)))
    if fidelity.name == "synthetic":
        from trainer.synthetic import score_weights

        record["score_weights"] = score_weights()
    return finish(record, out, args)


def finish(record: dict, out: Path, args) -> int:
    """Compare with the other rungs, write the record and its plot, print the table and store it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    record["spearman_rungs"] = cross_rung(record, out.parent)
    record["earned"] = (record["spearman_expected"] or 0) >= EARNED_SPEARMAN
    out.write_text(json.dumps(record, indent=1))
    picture = plot(record, out.with_suffix(".png"))
    print(table(record))
    for key, label in (("spearman_expected", "Spearman with the expected order"),
                       ("spearman_seeds", "seed-to-seed rank correlation")):
        value = record[key]
        print(f"{label}: {'-' if value is None else f'{value:.3f}'}")
    for rung, rho in record["spearman_rungs"].items():
        print(f"rank correlation with the {rung} rung: {'-' if rho is None else f'{rho:.3f}'}")
    print(f"wrote {out} and {picture}")
    if args.api:
        store(record, args.api, args.token)
        print(f"stored in {args.api}/calibrations/{record['fidelity']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(guard(main))
