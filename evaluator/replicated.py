"""Scores of a replicated experiment: one evaluation per seed's checkpoint, merged into mean ± SE.

Also the `synthetic` tier: a checkpoint trained on the generated tasks (trainer.synthetic) is scored
on a test set of each task drawn with a seed of its own, never the one validation used during training.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from database.fitness import benchmark_score
from database.stats import mean_se

SYNTHETIC_TIER = "synthetic"
TEST_SEED = 20_000  # the synthetic test sets; training validates on trainer.synthetic's own seed


def evaluate_synthetic(checkpoint: Path, device: str = "cpu") -> dict:
    """Per-task accuracy of a synthetic-fidelity checkpoint on freshly generated test sequences."""
    from trainer.checkpoint import load_checkpoint
    from trainer.synthetic import SyntheticTasks, task_accuracies

    started = time.monotonic()
    loaded = load_checkpoint(checkpoint, device=device)
    tasks = SyntheticTasks(loaded.config["max_seq_len"], eval_seed=TEST_SEED)

    @torch.no_grad()
    def logits_of(inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([loaded.model(batch.to(device)).logits.float().cpu() for batch in inputs.split(64)])

    summary = task_accuracies(tasks, logits_of)
    scores = {name: {"metric": "acc", "value": value, "stderr": None} for name, value in summary["tasks"].items()}
    return {"tier": SYNTHETIC_TIER, "tasks": scores, "average": summary["score"], "recall": summary["recall"],
            "perplexity": None, "examples": {name: tasks.eval_sequences for name in scores},
            "wall_s": time.monotonic() - started}


def merge_evaluations(evaluations: list[dict]) -> dict:
    """One evaluation from several seeds': every number becomes the mean, with `<name>_stats` beside it."""
    first = evaluations[0]
    merged = {key: value for key, value in first.items() if key not in ("tasks", "average", "recall", "perplexity")}
    merged["wall_s"] = sum(float(e.get("wall_s") or 0.0) for e in evaluations)
    merged["seeds"] = len(evaluations)
    for key in ("average", "recall", "perplexity"):
        stats = mean_se([e.get(key) for e in evaluations])
        merged[key] = stats["mean"] if stats else None
        if stats:
            merged[f"{key}_stats"] = stats
    # The benchmark part of fitness is computed per seed, so that its standard error is the seeds' spread.
    benchmark = mean_se([benchmark_score(e) for e in evaluations])
    if benchmark:
        merged["benchmark_stats"] = benchmark
    tasks = {}
    for name, score in (first.get("tasks") or {}).items():
        stats = mean_se([(e.get("tasks") or {}).get(name, {}).get("value") for e in evaluations])
        if stats:
            tasks[name] = {**score, "value": stats["mean"], "stats": stats}
    merged["tasks"] = tasks
    return merged
