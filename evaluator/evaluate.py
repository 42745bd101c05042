"""Benchmark a checkpoint with lm-evaluation-harness, offline.

    python -m evaluator.evaluate --checkpoint runs/default/checkpoints/1 --tier smoke [--out scores.json]

Tiers follow the trainer's fidelities:
    smoke    ARC-Easy, HellaSwag, PIQA (100 examples each), the recall tasks (100 each) and perplexity on
             3 Wikipedia pages: well under a minute for a tiny model on a laptop CPU
    explore  every task, 500 examples each (as the paper's exploration stage), perplexity on all 48 pages
    verify   every task in full
`--hub` scores lm-eval's own tasks and hub datasets instead of the local copies (needs network); the
recall and perplexity tasks stay local.

The result (printed as a table, written as JSON with --out) is what the experiment's `eval` field holds:
    {"tasks": {task: {"metric", "value", "stderr", "metrics"}}, "average": mean over language tasks,
     "recall": mean over recall tasks, "perplexity": Wikipedia word perplexity, "wall_s",
     "task_seconds": {task: seconds}, "examples": {task: count}, "tier", "limit"}
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from evaluator.quiet import offline_hub, quiet_libraries
from evaluator.tasks import ALL_TASKS, LANGUAGE_TASKS, PERPLEXITY_TASKS, RECALL_TASKS, SYNTHETIC_TASKS
from trainer.cli import Parser, checkpoint_dir, device_name, guard, one_of, positive_int
from trainer.data import default_cache_dir

offline_hub(True)  # before `datasets` is imported anywhere: local files only, never wait on the network

SMOKE_LANGUAGE = ["arc_easy", "hellaswag", "piqa"]
TIERS: dict[str, dict] = {
    "smoke": {"tasks": [*SMOKE_LANGUAGE, *RECALL_TASKS, *PERPLEXITY_TASKS],
              "limits": {"language": 100, "recall": 100, "perplexity": 3}},
    "explore": {"tasks": ALL_TASKS, "limits": {"language": 500, "recall": 500, "perplexity": None}},
    "verify": {"tasks": ALL_TASKS, "limits": {"language": None, "recall": None, "perplexity": None}},
}
# The number reported per task, as the DeltaNet and ASI-Arch papers report them: length-normalised
# accuracy for HellaSwag, ARC-Challenge and OpenBookQA, plain accuracy elsewhere.
PRIMARY_METRIC = {"arc_easy": "acc", "arc_challenge": "acc_norm", "boolq": "acc", "hellaswag": "acc_norm",
                  "lambada_openai": "acc", "openbookqa": "acc_norm", "piqa": "acc", "social_iqa": "acc",
                  "winogrande": "acc", "squad_completion": "contains", "recall_mqar": "acc", "recall_kv": "acc",
                  "wiki_perplexity": "word_perplexity"}
BINARY_METRICS = {"acc", "acc_norm", "contains"}
FEWSHOT_SEED = 1234  # simple_evaluate's default


def task_family(task: str) -> str:
    return "recall" if task in RECALL_TASKS else "perplexity" if task in PERPLEXITY_TASKS else "language"


def tier_limit(tier: str, task: str) -> int | None:
    return TIERS[tier]["limits"][task_family(task)]


def task_score(task: str, results: dict, count: int) -> dict:
    """The task's reported metric, its standard error, and every numeric metric lm-eval gave."""
    metrics = {key.split(",")[0]: float(value) for key, value in results.items()
               if "," in key and "_stderr" not in key and isinstance(value, (int, float))}
    name = PRIMARY_METRIC[task]
    value = metrics[name]
    stderr = None
    if name in BINARY_METRICS and count > 1:
        # lm-eval's closed-form standard error of a mean, for 0/1 scores (its bootstrap is off: see run_task).
        stderr = math.sqrt(max(value * (1 - value), 0.0) / (count - 1))
    return {"metric": name, "value": value, "stderr": stderr,
            "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)}}


def summarise(tasks: dict) -> dict:
    def mean(names):
        values = [tasks[n]["value"] for n in names if n in tasks]
        return sum(values) / len(values) if values else None

    perplexity = next((tasks[n]["value"] for n in PERPLEXITY_TASKS if n in tasks), None)
    return {"average": mean(LANGUAGE_TASKS), "recall": mean(RECALL_TASKS), "perplexity": perplexity}


def task_manager(names: list[str], cache_dir: Path, hub: bool):
    from lm_eval.tasks import TaskManager

    from evaluator.tasks import build_tasks, task_folders

    if not hub:
        return TaskManager(include_path=str(build_tasks(cache_dir, names)), include_defaults=False)
    local = [n for n in names if n in SYNTHETIC_TASKS]
    folders = task_folders(build_tasks(cache_dir, local), local) if local else None
    return TaskManager(include_path=folders, include_defaults=True)


def run_task(lm, task, manager, limit: int | None) -> tuple[dict, int]:
    """One task through lm-eval's `evaluate`, set up as `simple_evaluate` would (zero-shot, fixed seed).

    `simple_evaluate` itself is not used: per call it reloads the task and collects an environment
    report by running subprocesses, seconds per task that a smoke run cannot spare.
    """
    from lm_eval.evaluator import evaluate

    if task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    # bootstrap_iters=0: lm-eval's bootstrap forks a process pool (for LAMBADA's perplexity), costly on a
    # small CPU and unsafe in the worker's thread; the reported metrics' errors are computed in closed form.
    output = evaluate(lm=lm, task_dict=manager.load([task]), limit=limit, bootstrap_iters=0, log_samples=False)
    name = task.config.task
    return output["results"][name], int(output["n-samples"][name]["effective"])


def evaluate_model(lm, tier: str = "smoke", *, tasks: list[str] | None = None, limit: int | None = None,
                   cache_dir: str | Path | None = None, progress: bool = True, hub: bool = False) -> dict:
    """Score an lm-eval model (a `DiscoveryLM` or any `lm_eval.api.model.LM`) on a tier's tasks."""
    from trainer.progress import progress as progress_bar

    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {sorted(TIERS)}")
    started = time.monotonic()
    names = list(tasks or TIERS[tier]["tasks"])
    unknown = sorted(set(names) - set(ALL_TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {ALL_TASKS}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if hub:
        offline_hub(False)
    scores, seconds, examples = {}, {}, {}
    with quiet_libraries():
        manager = task_manager(names, cache_dir, hub)
        loaded = manager.load(names)["tasks"]  # every dataset is read before the first model call
        bar = progress_bar(names, desc="benchmarks", unit="task", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            tick = time.monotonic()
            # One task at a time: each gets its own time, and a failure names its task.
            results, count = run_task(lm, loaded[name], manager, limit if limit is not None else tier_limit(tier, name))
            score = task_score(name, results, count)
            if not math.isfinite(score["value"]):
                raise ValueError(f"task {name} gave a non-finite {score['metric']}: {score['value']}")
            scores[name], examples[name], seconds[name] = score, count, round(time.monotonic() - tick, 3)
    return {"tier": tier, "limit": limit, "tasks": scores, **summarise(scores), "wall_s": time.monotonic() - started,
            "task_seconds": seconds, "examples": examples}


def evaluate_checkpoint(checkpoint_dir: str | Path, tier: str = "smoke", *, limit: int | None = None,
                        cache_dir: str | Path | None = None, progress: bool = True, tasks: list[str] | None = None,
                        device: str = "cpu", batch_size: int = 32, hub: bool = False,
                        workdir: str | Path | None = None) -> dict:
    """Score a trained checkpoint on a tier's tasks (see the module docstring for the result).

    The model runs in a fresh sandboxed child (under WORKDIR, else a temporary directory)."""
    from evaluator.harness import DiscoveryLM

    started = time.monotonic()
    lm = DiscoveryLM.from_checkpoint(checkpoint_dir, device=device, batch_size=batch_size, progress=progress,
                                     workdir=workdir)
    try:
        result = evaluate_model(lm, tier, tasks=tasks, limit=limit, cache_dir=cache_dir, progress=progress, hub=hub)
    finally:
        lm.close()
    result["wall_s"] = time.monotonic() - started
    return result


def format_table(scores: dict) -> str:
    lines = [f"{'task':<20} {'metric':<16} {'value':>10} {'stderr':>8} {'n':>6} {'seconds':>8}"]
    for name, score in scores["tasks"].items():
        stderr = f"{score['stderr']:.4f}" if score.get("stderr") is not None else "-"
        seconds = (scores.get("task_seconds") or {}).get(name)
        lines.append(f"{name:<20} {score['metric']:<16} {score['value']:>10.4f} {stderr:>8} "
                     f"{(scores.get('examples') or {}).get(name, '-'):>6} "
                     f"{'-' if seconds is None else f'{seconds:.1f}':>8}")
    for key in ("average", "recall", "perplexity"):
        if scores.get(key) is not None:
            lines.append(f"{key:<37} {scores[key]:>10.4f}")
    lines.append(f"{'wall seconds':<37} {scores['wall_s']:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=checkpoint_dir)
    parser.add_argument("--tier", default="smoke", type=one_of(sorted([*TIERS, "synthetic"]), "tier"),
                        help="synthetic: a checkpoint of the synthetic fidelity, scored on fresh test sequences")
    parser.add_argument("--tasks", nargs="*", default=None, type=one_of(ALL_TASKS, "task"),
                        help=f"a subset of tasks (known: {' '.join(ALL_TASKS)})")
    parser.add_argument("--limit", type=positive_int, default=None, help="examples per task (default: the tier's)")
    parser.add_argument("--device", default="cpu", type=device_name)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--cache", default=None, help="where task files are built (default RUN_DIR/cache)")
    parser.add_argument("--hub", action="store_true", help="lm-eval's own tasks and hub datasets (needs network)")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.tier == "synthetic":
        from evaluator.replicated import evaluate_synthetic

        scores = evaluate_synthetic(Path(args.checkpoint), args.device,
                                    cache_dir=Path(args.cache) if args.cache else default_cache_dir())
    else:
        scores = evaluate_checkpoint(args.checkpoint, args.tier, limit=args.limit, tasks=args.tasks,
                                     cache_dir=args.cache, device=args.device, batch_size=args.batch_size, hub=args.hub,
                                     progress=not args.quiet)
    print(format_table(scores))
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(guard(main))
