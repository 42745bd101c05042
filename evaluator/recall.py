"""Recall-intensive tasks, generated deterministically (the published SWDE and FDA ship nowhere).

Both are multiple-choice lm-eval tasks whose answer can only come from the context:

- `recall_mqar`, multi-query associative recall: a list of key-value pairs ("tea 4 , sun 7 , ...")
  then a query key; the choices are the possible values.
- `recall_kv`, key-value lookup in a document: "The code of <name> is <n>." followed by filler
  sentences at a growing distance (`distance` words), then the question; choices are codes that all
  appear in the document, so only recalling the right association scores.

At CPU scale the language benchmarks sit at chance; these separate architectures by memory.
"""

from __future__ import annotations

import random

KEYS = ["tea", "sun", "map", "owl", "cup", "fig", "jar", "kit", "log", "net", "oak", "pen", "rug", "sky", "toy",
        "van", "wax", "yak", "zip", "bee", "cow", "den", "elk", "fox"]
NAMES = ["Anna", "Boris", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Irene", "Jonas", "Karin", "Louis"]
FILLER = ["The river ran slowly past the old mill.", "Rain fell on the quiet town all night.",
          "A merchant counted coins beside the gate.", "The bells rang twice before the evening meal.",
          "Children played near the edge of the field.", "The wind moved the tall grass in long waves.",
          "A cart rolled over the stones of the bridge.", "Smoke rose from the chimneys in the cold air."]
VALUES = [str(n) for n in range(10)]
KV_DISTANCES = (8, 32, 96)


def mqar_docs(count: int, *, pairs: int = 6, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        keys = rng.sample(KEYS, pairs)
        values = [rng.choice(VALUES) for _ in keys]
        query = rng.randrange(pairs)
        context = " , ".join(f"{k} {v}" for k, v in zip(keys, values, strict=True))
        docs.append({"id": i, "context": f"{context} . {keys[query]}", "choices": [f" {v}" for v in VALUES],
                     "gold": VALUES.index(values[query]), "pairs": pairs})
    return docs


def kv_docs(count: int, *, seed: int = 0, distances: tuple[int, ...] = KV_DISTANCES) -> list[dict]:
    rng = random.Random(seed + 1)
    docs = []
    for i in range(count):
        distance = distances[i % len(distances)]
        names = rng.sample(NAMES, 4)
        codes = rng.sample(range(10, 100), 4)
        facts = [f"The code of {n} is {c}." for n, c in zip(names, codes, strict=True)]
        target = rng.randrange(4)
        filler, words = [], 0
        while words < distance:
            sentence = rng.choice(FILLER)
            filler.append(sentence)
            words += len(sentence.split())
        text = " ".join([*facts, *filler, f"The code of {names[target]} is"])
        docs.append({"id": i, "context": text, "choices": [f" {c}" for c in codes], "gold": target,
                     "distance": distance})
    return docs


GENERATORS = {"recall_mqar": mqar_docs, "recall_kv": kv_docs}


def answer_from_context(context: str, task: str) -> str:
    """What a perfect associative memory answers: the value stored for the queried key, read from the context."""
    if task == "recall_mqar":
        pairs, query = context.rsplit(" . ", 1)
        table = dict(item.split(" ") for item in pairs.split(" , "))
        return f" {table[query]}"
    facts, question = context.rsplit("The code of ", 1)
    name = question.removesuffix(" is")
    return " " + facts.split(f"The code of {name} is ", 1)[1].split(".", 1)[0]
