"""Scores of a replicated experiment: one evaluation per seed's checkpoint, merged into mean ± SE.

Also the `synthetic` tier: a checkpoint trained on the generated tasks (trainer.synthetic) is scored
on a test set of each task drawn with a secret seed of the evaluator's, never the one validation used.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

import torch

from database.fitness import benchmark_score
from database.stats import mean_se

SYNTHETIC_TIER = "synthetic"


def test_seed(cache_dir: Path) -> int:
    """The seed of the synthetic test sets: drawn once per evaluator cache, kept where no sandbox can read it,
    so that no program can generate the test sequences (the generator's code is public) and learn them."""
    path = Path(cache_dir) / "synthetic-test-seed"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(20_000 + secrets.randbelow(2**31)))
    return int(path.read_text())


def evaluate_synthetic(checkpoint: Path, device: str = "cpu", *, cache_dir: Path, workdir: Path | None = None) -> dict:
    """Per-task accuracy of a synthetic-fidelity checkpoint on test sequences no run has seen.

    The model answers from a sandboxed child (trainer.boundary); accuracy is computed here.
    """
    from trainer.boundary import SandboxedModel
    from trainer.checkpoint import verify_checkpoint
    from trainer.synthetic import SyntheticTasks, task_accuracies

    started = time.monotonic()
    config = verify_checkpoint(checkpoint)
    tasks = SyntheticTasks(config["max_seq_len"], eval_seed=test_seed(cache_dir))
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="discovery-eval-"))
    with SandboxedModel(checkpoint, workdir=workdir, device=device) as model:
        summary = task_accuracies(tasks, lambda inputs: torch.cat([model(batch) for batch in inputs.split(64)]))
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
