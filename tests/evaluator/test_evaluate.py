"""Tiers, the result every stage after evaluation reads, and the command lines."""

from __future__ import annotations

import json
import math

import pytest
from lm_eval.api.model import LM

from evaluator import evaluate as ev
from evaluator.lm_eval_cli import local_include_args
from evaluator.tasks import ALL_TASKS, LANGUAGE_TASKS, RECALL_TASKS, benchmarks_dir


def test_tiers():
    assert set(ev.TIERS["explore"]["tasks"]) == set(ev.TIERS["verify"]["tasks"]) == set(ALL_TASKS)
    smoke = ev.TIERS["smoke"]["tasks"]
    assert set(RECALL_TASKS) <= set(smoke) and "wiki_perplexity" in smoke
    assert 2 <= len(set(smoke) & set(LANGUAGE_TASKS)) <= 3
    assert ev.tier_limit("smoke", "arc_easy") == 100 and ev.tier_limit("explore", "hellaswag") == 500
    assert ev.tier_limit("verify", "boolq") is None and ev.tier_limit("explore", "wiki_perplexity") is None
    assert set(ev.PRIMARY_METRIC) == set(ALL_TASKS)


def test_smoke_evaluation_of_a_checkpoint(checkpoint_dir, bench_cache):
    scores = ev.evaluate_checkpoint(checkpoint_dir, "smoke", limit=8, cache_dir=bench_cache, progress=False)
    assert list(scores["tasks"]) == ev.TIERS["smoke"]["tasks"]
    for name, score in scores["tasks"].items():
        assert score["metric"] == ev.PRIMARY_METRIC[name]
        assert math.isfinite(score["value"])
        assert score["stderr"] is None or score["stderr"] >= 0
        assert scores["task_seconds"][name] >= 0
        assert scores["examples"][name] == 8
    language = [s["value"] for n, s in scores["tasks"].items() if n in LANGUAGE_TASKS]
    assert scores["average"] == pytest.approx(sum(language) / len(language))
    assert scores["recall"] == pytest.approx(sum(scores["tasks"][n]["value"] for n in RECALL_TASKS) / 2)
    assert scores["perplexity"] == scores["tasks"]["wiki_perplexity"]["value"] > 1
    assert scores["wall_s"] > 0 and scores["tier"] == "smoke"
    json.dumps(scores, allow_nan=False)  # what the API stores


def test_default_limits_follow_the_tier(checkpoint_dir, bench_cache):
    scores = ev.evaluate_checkpoint(checkpoint_dir, "smoke", tasks=["recall_mqar", "wiki_perplexity"],
                                    cache_dir=bench_cache, progress=False)
    assert scores["examples"] == {"recall_mqar": 100, "wiki_perplexity": 3}
    assert scores["average"] is None and scores["recall"] == scores["tasks"]["recall_mqar"]["value"]


class InfinitePerplexity(LM):
    def loglikelihood(self, requests, disable_tqdm=False):
        return [(-1.0, False) for _ in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [-math.inf for _ in requests]

    def generate_until(self, requests, disable_tqdm=False):
        return ["" for _ in requests]


def test_a_non_finite_score_names_its_task(bench_cache):
    with pytest.raises(ValueError, match="wiki_perplexity"):
        ev.evaluate_model(InfinitePerplexity(), tasks=["wiki_perplexity"], limit=2, cache_dir=bench_cache,
                          progress=False)


def test_unknown_tier_or_task(bench_cache):
    with pytest.raises(ValueError, match="tier"):
        ev.evaluate_model(InfinitePerplexity(), "huge", cache_dir=bench_cache)
    with pytest.raises(ValueError, match="mmlu"):
        ev.evaluate_model(InfinitePerplexity(), tasks=["mmlu"], cache_dir=bench_cache)


def test_hub_mode_keeps_only_generated_tasks_local(bench_cache, monkeypatch):
    seen = {}

    class Recorder:
        def __init__(self, include_path=None, include_defaults=True):
            seen.update(include_path=include_path, include_defaults=include_defaults)

    monkeypatch.setattr("lm_eval.tasks.TaskManager", Recorder)
    ev.task_manager(["arc_easy", "recall_kv"], bench_cache, hub=True)
    assert seen["include_defaults"] is True
    assert [path.rsplit("/", 1)[1] for path in seen["include_path"]] == ["recall_kv"]


def test_command_line_prints_a_table_and_writes_json(checkpoint_dir, bench_cache, tmp_path, capsys):
    out = tmp_path / "scores.json"
    ev.main(["--checkpoint", str(checkpoint_dir), "--tasks", "piqa", "recall_kv", "--limit", "4", "--cache",
             str(bench_cache), "--out", str(out), "--quiet"])
    table = capsys.readouterr().out
    assert "piqa" in table and "recall_kv" in table and "recall" in table
    written = json.loads(out.read_text())
    assert set(written["tasks"]) == {"piqa", "recall_kv"} and written["examples"]["piqa"] == 4


def test_lm_eval_cli_adds_the_local_tasks(bench_cache):
    argv = local_include_args(["--model", "discovery", "--offline-tasks", str(bench_cache), "--tasks", "arc_easy"])
    assert argv == ["--model", "discovery", "--tasks", "arc_easy", "--include_path",
                    str(benchmarks_dir(bench_cache) / "tasks")]
    assert local_include_args(["--model", "hf"]) == ["--model", "hf"]
