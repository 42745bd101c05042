"""Benchmark a checkpoint with lm-evaluation-harness, offline.

    python -m evaluator.evaluate --checkpoint runs/default/checkpoints/1 --tier smoke [--out scores.json]

Tiers match the trainer's fidelities:
    smoke    ARC-Easy, PIQA, LAMBADA, the recall tasks and held-out perplexity, 100 examples each: seconds on a CPU
    explore  every task, 500 examples each (as the paper's exploration stage)
    verify   every task in full
`--hub` uses lm-eval's own task names and hub datasets instead of the local copies (needs network).

The result (printed as a table, written as JSON) is what the experiment's `eval` field holds:
{"tasks": {task: {"metric", "value", "stderr", "seconds"}}, "average": mean over language tasks,
 "recall": mean over recall tasks, "perplexity": held-out word perplexity, "wall_s"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

# Local task files only: never let `datasets` or the hub client wait on the network.
for _name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
    os.environ.setdefault(_name, "1")

from evaluator.tasks import LANGUAGE_TASKS, PERPLEXITY_TASKS, RECALL_TASKS, build_tasks  # noqa: E402

TIERS = {
    "smoke": {"tasks": ["arc_easy", "piqa", "lambada_openai", *RECALL_TASKS, *PERPLEXITY_TASKS], "limit": 100},
    "explore": {"tasks": [*LANGUAGE_TASKS, *RECALL_TASKS, *PERPLEXITY_TASKS], "limit": 500},
    "verify": {"tasks": [*LANGUAGE_TASKS, *RECALL_TASKS, *PERPLEXITY_TASKS], "limit": None},
}
# The number reported per task: length-normalised accuracy where lm-eval has it (as the paper reports).
PREFERRED_METRICS = ("acc_norm", "acc", "contains", "word_perplexity")
HUB_NAMES = {"lambada_openai": "lambada_openai", "social_iqa": "social_iqa", "squad_completion": "squad_completion"}


def primary_metric(results: dict) -> tuple[str, float, float | None]:
    for metric in PREFERRED_METRICS:
        key = f"{metric},none"
        if key in results:
            stderr = results.get(f"{metric}_stderr,none")
            return metric, float(results[key]), float(stderr) if isinstance(stderr, (int, float)) else None
    raise KeyError(f"no known metric in {sorted(results)}")


def summarise(tasks: dict) -> dict:
    def mean(names):
        values = [tasks[n]["value"] for n in names if n in tasks]
        return sum(values) / len(values) if values else None

    perplexity = next((tasks[n]["value"] for n in PERPLEXITY_TASKS if n in tasks), None)
    return {"average": mean(LANGUAGE_TASKS), "recall": mean(RECALL_TASKS), "perplexity": perplexity}


def evaluate_checkpoint(checkpoint: str | Path, tier: str = "smoke", *, limit: int | None = None,
                        tasks: list[str] | None = None, cache_dir: Path | None = None, device: str = "cpu",
                        batch_size: int = 32, hub: bool = False, progress: bool = True) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from evaluator.harness import DiscoveryLM

    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {sorted(TIERS)}")
    started = time.monotonic()
    names = tasks or TIERS[tier]["tasks"]
    limit = limit if limit is not None else TIERS[tier]["limit"]
    cache_dir = Path(cache_dir or Path(os.environ.get("RUN_DIR", "runs/default")) / "cache")
    if hub:
        os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "0"
        manager = TaskManager()
        names = [HUB_NAMES.get(n, n) for n in names if n not in RECALL_TASKS + PERPLEXITY_TASKS]
    else:
        manager = TaskManager(include_path=str(build_tasks(cache_dir, names)), include_defaults=False)
    lm = DiscoveryLM(checkpoint=str(checkpoint), device=device, batch_size=batch_size)
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    results: dict[str, dict] = {}
    from tqdm import tqdm

    for name in tqdm(names, desc="benchmarks", unit="task", disable=not progress):
        tick = time.monotonic()
        # One task at a time, so each gets its own time and a failure names its task.
        output = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=limit,
                                         bootstrap_iters=100, log_samples=False, verbosity="WARNING")
        metric, value, stderr = primary_metric(output["results"][name])
        if not math.isfinite(value):
            raise ValueError(f"task {name} gave a non-finite {metric}: {value}")
        results[name] = {"metric": metric, "value": value, "stderr": stderr, "seconds": time.monotonic() - tick}
    return {"tier": tier, "limit": limit, "tasks": results, **summarise(results), "wall_s": time.monotonic() - started}


def format_table(scores: dict) -> str:
    lines = [f"{'task':<20} {'metric':<16} {'value':>9} {'stderr':>8} {'seconds':>8}"]
    for name, score in scores["tasks"].items():
        stderr = f"{score['stderr']:.4f}" if score.get("stderr") is not None else "-"
        lines.append(f"{name:<20} {score['metric']:<16} {score['value']:>9.4f} {stderr:>8} {score['seconds']:>8.1f}")
    for key in ("average", "recall", "perplexity"):
        if scores.get(key) is not None:
            lines.append(f"{key:<37} {scores[key]:>9.4f}")
    lines.append(f"{'wall seconds':<37} {scores['wall_s']:>9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tier", default="smoke", choices=sorted(TIERS))
    parser.add_argument("--tasks", nargs="*", default=None, help="a subset of the tier's tasks")
    parser.add_argument("--limit", type=int, default=None, help="examples per task (default: the tier's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache", default=None, help="where task files are built (default RUN_DIR/cache)")
    parser.add_argument("--hub", action="store_true", help="lm-eval's own tasks and hub datasets (needs network)")
    parser.add_argument("--out", default=None, help="write the scores as JSON here")
    args = parser.parse_args(argv)
    scores = evaluate_checkpoint(args.checkpoint, args.tier, limit=args.limit, tasks=args.tasks,
                                 cache_dir=args.cache, device=args.device, batch_size=args.batch_size, hub=args.hub)
    print(format_table(scores))
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
