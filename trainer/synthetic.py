"""Synthetic token-mixing tasks, generated on the fly: the `synthetic` fidelity trains on them directly.

In the spirit of Zoology (multi-query associative recall) and MAD (noisy recall, selective copying,
compression, memorisation): small problems whose answers need one specific ability of a token mixer,
so that a cheap run separates layers the way large language-model training does, where next-token
loss on a small corpus does not (it rewards local statistics first).

Every sequence starts with its task's token, so one model learns all tasks at once from a mixed
batch. Only answer positions carry labels (-100 elsewhere), and an answer is always a token that
the prefix determines. Recall tasks train on a spread of difficulties (2 to 16 pairs, 8 queries at most), which gives
every layer a gradient to start from, and are scored at fixed ones (4, 8 and 16 pairs). Accuracy is the fraction of
answer tokens predicted exactly (greedy), so a constant guess scores chance: 1/64 for a value.

The combined `score` is a weighted mean of the task accuracies (`SCORE_WEIGHTS`; the environment variable
SYNTHETIC_WEIGHTS="selective_copy=1,mqar_16=2" changes them). Selective copying weighs 0 by default: it
rewards a data-dependent gate that tracks order (the Mamba paper's point), not memory capacity, on which
the expected order of the panel is defined (trainer/panel/EXPECTED.md); in the calibration of this rung it
put GLA above softmax attention and the delta rule and reshuffled the top tiers between seeds. It is still
trained and reported.

    tasks = SyntheticTasks(seq_len=64)
    inputs, labels = tasks.train_batch(32, torch.Generator().manual_seed(0))
    scores = tasks.score(model_forward)          # {"mqar_8": 0.97, ..., "score": 0.71}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

PAD, SEP, BLANK = 0, 1, 2
TASK_TOKEN = 3  # tokens 3..15 name the task of a sequence
KEYS = range(16, 80)
VALUES = range(80, 144)
NOISE = range(144, 176)
MEMO_KEYS = range(176, 240)
VOCAB_SIZE = 256
# The memorisation task's key -> value map is part of the task, the same for every model and seed.
MEMO_MAP_SEED = 1234
IGNORE = -100


def _pick(tokens: range, count: int, rng: torch.Generator, replace: bool = False) -> torch.Tensor:
    if replace:
        return torch.randint(len(tokens), (count,), generator=rng) + tokens.start
    return torch.randperm(len(tokens), generator=rng)[:count] + tokens.start


def mqar(rng: torch.Generator, pairs: int, noise: int = 0, queries: int = 8) -> tuple[list[int], list[int]]:
    """Key-value pairs, then up to `queries` of the keys again, each followed by its value (the answer).

    With `noise`, that many noise tokens are scattered between the pairs and the queries (MAD's noisy recall).
    """
    keys, values = _pick(KEYS, pairs, rng), _pick(VALUES, pairs, rng, replace=True)
    stored: list[list[int]] = [[int(k), int(v)] for k, v in zip(keys, values, strict=True)]
    for _ in range(noise):
        stored[int(torch.randint(pairs, (1,), generator=rng))].append(int(_pick(NOISE, 1, rng, replace=True)))
    tokens = [t for chunk in stored for t in chunk] + [SEP]
    labels = [IGNORE] * len(tokens)
    for i in torch.randperm(pairs, generator=rng)[:queries].tolist():
        tokens += [int(keys[i]), int(values[i])]
        labels += [IGNORE, int(values[i])]
    return tokens, labels


def selective_copy(rng: torch.Generator, items: int = 8, span: int = 40) -> tuple[list[int], list[int]]:
    """`items` tokens scattered among blanks; after the delimiter, those tokens in order."""
    data = _pick(KEYS, items, rng, replace=True).tolist()
    where = sorted(torch.randperm(span, generator=rng)[:items].tolist())
    tokens = [BLANK] * span
    for position, token in zip(where, data, strict=True):
        tokens[position] = token
    tokens.append(SEP)
    return tokens + data, [IGNORE] * (span + 1) + data


def compression(rng: torch.Generator, length: int = 16) -> tuple[list[int], list[int]]:
    """A sequence of distinct tokens, a delimiter, then the sequence again: the whole of it must be held in
    the mixer's state (MAD's compression task, posed as next-token prediction)."""
    data = _pick(KEYS, length, rng).tolist()
    return data + [SEP] + data, [IGNORE] * (length + 1) + data


def memo_map() -> torch.Tensor:
    return _pick(VALUES, len(MEMO_KEYS), torch.Generator().manual_seed(MEMO_MAP_SEED), replace=True)


def memorization(rng: torch.Generator, pairs: int = 24, table: torch.Tensor | None = None) -> tuple[list, list]:
    """Keys followed by their values under one fixed map: learned into the weights, not read from context."""
    table = memo_map() if table is None else table
    keys = _pick(MEMO_KEYS, pairs, rng)
    tokens, labels = [], []
    for key in keys.tolist():
        value = int(table[key - MEMO_KEYS.start])
        tokens += [key, value]
        labels += [IGNORE, value]
    return tokens, labels


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[torch.Generator], tuple[list[int], list[int]]]
    recall: bool  # counts in the recall mean
    share: float = 1.0  # relative frequency in training batches


TRAIN_PAIRS = (2, 16)  # recall tasks train on a uniform spread of pair counts


def _train_mqar(rng: torch.Generator) -> tuple[list[int], list[int]]:
    return mqar(rng, int(torch.randint(TRAIN_PAIRS[0], TRAIN_PAIRS[1] + 1, (1,), generator=rng)))


def _train_noisy(rng: torch.Generator) -> tuple[list[int], list[int]]:
    pairs = int(torch.randint(TRAIN_PAIRS[0], 9, (1,), generator=rng))
    return mqar(rng, pairs, noise=2 * pairs)


# Scored tasks: name -> generator at a fixed difficulty. The order is the order of reports.
def scored_tasks() -> list[Task]:
    table = memo_map()
    return [
        Task("mqar_4", lambda rng: mqar(rng, 4), True),
        Task("mqar_8", lambda rng: mqar(rng, 8), True),
        Task("mqar_16", lambda rng: mqar(rng, 16), True),
        Task("noisy_recall", lambda rng: mqar(rng, 8, noise=16), True),
        Task("selective_copy", selective_copy, False),
        Task("compression", compression, False),
        Task("memorization", lambda rng: memorization(rng, table=table), False),
    ]


def training_tasks() -> list[Task]:
    """What a training batch mixes: the recall tasks at every difficulty, the others as scored."""
    scored = {task.name: task for task in scored_tasks()}
    # Recall gets the largest share: it is where layers differ, and where learning starts late (a phase
    # transition); memorisation is learned by every layer within a hundred steps and needs few examples.
    return [Task("mqar", _train_mqar, True, 0.35), Task("noisy_recall", _train_noisy, True, 0.2),
            replace(scored["selective_copy"], share=0.15), replace(scored["compression"], share=0.2),
            replace(scored["memorization"], share=0.1)]


def _task_token(name: str) -> int:
    names = ["mqar", "noisy_recall", "selective_copy", "compression", "memorization"]
    return TASK_TOKEN + names.index("mqar" if name.startswith("mqar") else name)


class SyntheticTasks:
    """Batches of the task mixture for training, and a fixed held-out set per task for scoring."""

    vocab_size = VOCAB_SIZE
    eos_token_id = PAD
    tokenizer = None  # token ids are the data; there is no text

    def __init__(self, seq_len: int = 64, eval_sequences: int = 128, eval_seed: int = 10_000):
        self.seq_len, self.eval_sequences, self.eval_seed = seq_len, eval_sequences, eval_seed
        self.train, self.scored = training_tasks(), scored_tasks()

    def _sequence(self, task: Task, rng: torch.Generator) -> tuple[list[int], list[int]]:
        tokens, labels = task.make(rng)
        tokens, labels = [_task_token(task.name), *tokens], [IGNORE, *labels]
        if len(tokens) > self.seq_len:
            raise ValueError(f"task {task.name!r} needs {len(tokens)} positions; seq_len is {self.seq_len}")
        pad = self.seq_len - len(tokens)
        return tokens + [PAD] * pad, labels + [IGNORE] * pad

    def _stack(self, rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])

    def train_batch(self, size: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        shares = torch.tensor([task.share for task in self.train])
        picks = torch.multinomial(shares, size, replacement=True, generator=rng).tolist()
        return self._stack([self._sequence(self.train[i], rng) for i in picks])

    def eval_set(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """The same held-out sequences for every model: seeded by the task, never by the training seed."""
        rng = torch.Generator().manual_seed(self.eval_seed + sum(map(ord, task.name)))
        return self._stack([self._sequence(task, rng) for _ in range(self.eval_sequences)])

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every scored task's held-out set, stacked: the validation loss is measured on it."""
        sets = [self.eval_set(task) for task in self.scored]
        return torch.cat([s[0] for s in sets]), torch.cat([s[1] for s in sets])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact-match accuracy of next-token predictions at the labelled positions (labels aligned with inputs)."""
    predicted = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    mask = target != IGNORE
    return float((predicted[mask] == target[mask]).float().mean())


SCORE_WEIGHTS = {"selective_copy": 0.0}  # every other task weighs 1 (see the module's docstring)


def score_weights(environ: dict | None = None) -> dict[str, float]:
    """Each scored task's weight in `score`: SCORE_WEIGHTS, then SYNTHETIC_WEIGHTS="task=w,..." over it."""
    weights = {task.name: SCORE_WEIGHTS.get(task.name, 1.0) for task in scored_tasks()}
    spec = (os.environ if environ is None else environ).get("SYNTHETIC_WEIGHTS", "").strip()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        if name not in weights:
            raise ValueError(f"SYNTHETIC_WEIGHTS: unknown task {name!r}; tasks are {sorted(weights)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"SYNTHETIC_WEIGHTS: {item!r} is not task=number") from None
        if not weights[name] >= 0:
            raise ValueError(f"SYNTHETIC_WEIGHTS: {item!r} must not be negative")
    if not sum(weights.values()) > 0:
        raise ValueError("SYNTHETIC_WEIGHTS: at least one task must weigh more than 0")
    return weights


def combined_score(accuracies: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """The weighted mean of the task accuracies (tasks without a weight count 1)."""
    weights = score_weights() if weights is None else weights
    total = sum(weights.get(name, 1.0) for name in accuracies)
    return sum(weights.get(name, 1.0) * value for name, value in accuracies.items()) / total


def summarise(accuracies: dict[str, float], tasks: list[Task] | None = None) -> dict:
    """Per-task accuracy plus `score` (the weighted mean over tasks) and `recall` (mean over the recall tasks)."""
    tasks = tasks or scored_tasks()
    recall = [accuracies[t.name] for t in tasks if t.recall]
    return {"tasks": dict(accuracies), "score": combined_score(accuracies),
            "recall": sum(recall) / len(recall)}


def task_accuracies(tasks: SyntheticTasks, logits_of: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """Score a model, given as a function from input ids to logits, on every task's held-out set."""
    accuracies = {}
    for task in tasks.scored:
        inputs, labels = tasks.eval_set(task)
        accuracies[task.name] = accuracy(logits_of(inputs), labels)
    return summarise(accuracies, tasks.scored)
