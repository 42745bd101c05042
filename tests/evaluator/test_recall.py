"""Recall tasks: deterministic, answerable from the context alone, at chance for a model without memory."""

from __future__ import annotations

import math

from lm_eval.api.model import LM

from evaluator import recall
from evaluator.evaluate import evaluate_model
from evaluator.harness import DiscoveryLM


class Oracle(LM):
    """Reads the answer out of the prompt as a perfect associative memory would."""

    def __init__(self, task: str):
        super().__init__()
        self.task = task

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        scores = []
        for request in requests:
            context, continuation = request.args
            right = continuation == recall.answer_from_context(self.task, context)
            scores.append((0.0 if right else -20.0, right))
        return scores

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def test_documents_are_deterministic_and_seeded():
    for generate in recall.GENERATORS.values():
        assert generate(40) == generate(40)
        assert generate(40, seed=1) != generate(40)
        assert generate(10) == generate(40)[:10]


def test_every_answer_is_in_the_context_and_levels_cycle():
    for task, generate in recall.GENERATORS.items():
        docs = generate(60)
        for doc in docs:
            assert recall.answer_from_context(task, doc["context"]) == doc["choices"][doc["gold"]]
        levels = [doc["level"] for doc in docs[:6]]
        assert len(set(levels)) == 3 and levels[:3] == levels[3:]
    # The key-value facts sit further from the question as the level grows.
    far = [doc for doc in recall.kv_docs(30) if doc["level"] == max(recall.KV_DISTANCES)]
    assert all(len(doc["context"].split()) > max(recall.KV_DISTANCES) for doc in far)


def test_oracle_scores_one(bench_cache):
    for task in recall.GENERATORS:
        scores = evaluate_model(Oracle(task), tasks=[task], limit=200, cache_dir=bench_cache, progress=False)
        assert scores["tasks"][task]["value"] == 1.0
        assert scores["recall"] == 1.0


def test_random_model_scores_near_chance(tiny_gpt2, tiny_tokenizer, bench_cache):
    # GPT-2 has 64 positions, so long documents lose their start: no matter to a model that recalls nothing.
    lm = DiscoveryLM(tiny_gpt2, tiny_tokenizer, eot_token_id=0, max_length=64, batch_size=32, progress=False)
    chance = {"recall_mqar": 1 / 10, "recall_kv": 1 / 4}
    scores = evaluate_model(lm, tasks=list(chance), limit=300, cache_dir=bench_cache, progress=False)
    for task, p in chance.items():
        value = scores["tasks"][task]["value"]
        assert abs(value - p) < 4 * math.sqrt(p * (1 - p) / 300), (task, value)


def test_a_constant_answer_scores_chance_exactly():
    for task, chance in (("recall_mqar", 0.1), ("recall_kv", 0.25)):
        docs = recall.GENERATORS[task](100)
        for guess in range(10):
            # Always the same digit (MQAR), or always the same place among the choices (key-value lookup).
            hits = [doc["choices"][doc["gold"]] == f" {guess}" if task == "recall_mqar" else doc["gold"] == guess % 4
                    for doc in docs]
            assert sum(hits) / len(hits) == chance, (task, guess)
