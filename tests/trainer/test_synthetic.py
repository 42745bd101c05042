"""The synthetic tasks: every answer follows from the prefix, scoring is exact, and a constant guess scores chance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.synthetic import (
    BLANK,
    IGNORE,
    PAD,
    SEP,
    VOCAB_SIZE,
    SyntheticTasks,
    accuracy,
    memo_map,
    task_accuracies,
)
from trainer.synthetic import MEMO_KEYS as MEMO

TASKS = SyntheticTasks(seq_len=64, eval_sequences=64)


def oracle_answer(name: str, prefix: list[int]) -> int:
    """What a perfect memory answers after reading `prefix` (the task token first)."""
    body = prefix[1:]
    if name.startswith("mqar") or name == "noisy_recall":
        stored = body[:body.index(SEP)]
        key = prefix[-1]
        return stored[stored.index(key) + 1]
    if name == "selective_copy":
        cut = body.index(SEP)
        data = [t for t in body[:cut] if t != BLANK]
        return data[len(body) - cut - 1]
    if name == "compression":
        cut = body.index(SEP)
        return body[len(body) - cut - 1]
    if name == "memorization":
        return int(memo_map()[prefix[-1] - MEMO.start])
    raise KeyError(name)


def oracle_logits(name: str, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = torch.zeros(*inputs.shape, VOCAB_SIZE)
    for b in range(inputs.shape[0]):
        for t in range(1, inputs.shape[1]):
            if labels[b, t] != IGNORE:
                logits[b, t - 1, oracle_answer(name, inputs[b, :t].tolist())] = 1.0
    return logits


def test_every_answer_follows_from_its_prefix():
    for task in TASKS.scored:
        inputs, labels = TASKS.eval_set(task)
        assert inputs.shape == (64, 64) and int((labels != IGNORE).sum()) > 0
        assert accuracy(oracle_logits(task.name, inputs, labels), labels) == 1.0, task.name


def test_a_constant_guess_scores_about_chance_and_a_no_memory_model_scores_nothing_on_recall():
    for task in TASKS.scored:
        inputs, labels = TASKS.eval_set(task)
        answers = labels[labels != IGNORE]
        most_common = int(torch.mode(answers).values)
        constant = F.one_hot(torch.full_like(inputs, most_common), VOCAB_SIZE).float()
        share = float((answers == most_common).float().mean())
        assert accuracy(constant, labels) == share
        if task.recall:
            assert share < 0.1, (task.name, share)  # values are balanced: no constant wins


def test_held_out_sets_are_fixed_and_never_drawn_by_training():
    first = [TASKS.eval_set(t)[0] for t in TASKS.scored]
    again = [SyntheticTasks(seq_len=64, eval_sequences=64).eval_set(t)[0] for t in TASKS.scored]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    test = SyntheticTasks(seq_len=64, eval_sequences=64, eval_seed=20_000)
    assert not torch.equal(test.eval_set(TASKS.scored[0])[0], first[0])
    held_out = {tuple(row.tolist()) for block in first for row in block}
    trained = TASKS.train_batch(512, torch.Generator().manual_seed(0))[0]
    assert sum(tuple(row.tolist()) in held_out for row in trained) <= 2  # only short memorisation rows may repeat


def test_training_batches_mix_every_task_and_pad_at_the_end():
    inputs, labels = TASKS.train_batch(256, torch.Generator().manual_seed(1))
    assert inputs.shape == labels.shape == (256, 64)
    assert set(inputs[:, 0].tolist()) == {3, 4, 5, 6, 7}
    padded = inputs == PAD
    assert torch.all(labels[padded] == IGNORE)
    # Padding only ever follows the sequence.
    assert torch.all(padded[:, 1:] >= padded[:, :-1])


def test_scores_summarise_per_task_with_recall_and_overall():
    def perfect(inputs):
        for task in TASKS.scored:
            task_inputs, labels = TASKS.eval_set(task)
            if torch.equal(task_inputs, inputs):
                return oracle_logits(task.name, inputs, labels)
        raise AssertionError("unknown inputs")

    summary = task_accuracies(TASKS, perfect)
    assert summary["score"] == 1.0 and summary["recall"] == 1.0
    assert set(summary["tasks"]) == {t.name for t in TASKS.scored}


def test_the_combined_score_weighs_tasks_and_leaves_selective_copy_out_by_default():
    from trainer.synthetic import combined_score, score_weights, summarise

    accuracies = {t.name: 1.0 for t in TASKS.scored} | {"selective_copy": 0.0, "mqar_16": 0.3}
    weights = score_weights({})
    assert weights["selective_copy"] == 0 and all(w == 1 for n, w in weights.items() if n != "selective_copy")
    assert combined_score(accuracies, weights) == pytest.approx((5 + 0.3) / 6)
    assert summarise(accuracies)["score"] == pytest.approx((5 + 0.3) / 6)
    equal = score_weights({"SYNTHETIC_WEIGHTS": "selective_copy=1, mqar_16=2"})
    assert combined_score(accuracies, equal) == pytest.approx((5 + 0 + 2 * 0.3) / 8)
    for bad in ("recall=1", "mqar_4=x", "mqar_4=-1", ",".join(f"{t.name}=0" for t in TASKS.scored)):
        with pytest.raises(ValueError, match="SYNTHETIC_WEIGHTS"):
            score_weights({"SYNTHETIC_WEIGHTS": bad})
