"""Recall-intensive tasks, generated deterministically (the published SWDE and FDA ship nowhere).

Both are multiple-choice tasks whose answer can only come from the context, so they measure how much
a token mixer remembers, which is what separates linear-attention designs while the language
benchmarks still sit at chance (at CPU scale):

- `recall_mqar`, multi-query associative recall: key-value pairs ("tea 4 , sun 7 , map 1"), then
  queries; the earlier queries are answered in the text (they also show the format), the last one is
  asked: "... . sun 7 , tea" -> " 4". The choices are the ten digits (chance 0.1), and each digit is
  the answer equally often in every block of ten documents, so a model that always answers one digit
  scores 0.1 exactly.
- `recall_kv`, key-value lookup in a document: four facts "The code of Anna is 7.", filler
  sentences for a growing number of words, then "The code of Anna is" -> " 7". The choices are the
  four codes of the document, so only the right association scores (chance 0.25); the answer's digit
  and its place among the choices are balanced the same way.

Difficulty cycles with the document index (pairs 2/4/8, distances 16/64/256 words), so any prefix of
the documents, as a tier's example limit takes, mixes every level. The vocabulary is small and plain
(three-letter words, names, digits) so that tiny models can learn the copying involved. Every answer
is one digit: whatever the tokenizer, the choices of a question then differ in their last token only,
and the adapter scores all of them with one forward pass.
"""

from __future__ import annotations

import random

KEYS = ["tea", "sun", "map", "owl", "cup", "fig", "jar", "kit", "log", "net", "oak", "pen", "rug", "sky", "toy",
        "van", "wax", "yak", "zip", "bee", "cow", "den", "elk", "fox"]
VALUES = [str(n) for n in range(10)]
NAMES = ["Anna", "Boris", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Irene", "Jonas", "Karin", "Louis"]
FILLER = ["The river ran slowly past the old mill.", "Rain fell on the quiet town all night.",
          "A merchant counted coins beside the gate.", "The bells rang twice before the evening meal.",
          "Children played near the edge of the field.", "The wind moved the tall grass in long waves.",
          "A cart rolled over the stones of the bridge.", "Smoke rose from the chimneys in the cold air."]
MQAR_PAIRS = (2, 4, 8)
MQAR_QUERIES = 3  # at most; never more than the pairs
KV_FACTS = 4
KV_DISTANCES = (16, 64, 256)
DOCS = 1000  # per task; tiers take a prefix


def balanced(rng: random.Random, options: list, count: int) -> list:
    """`count` draws in which every option appears equally often in each block of len(options) (shuffled):
    a model that always gives the same answer then scores chance exactly over any whole number of blocks."""
    draws = []
    while len(draws) < count:
        block = list(options)
        rng.shuffle(block)
        draws += block
    return draws[:count]


def mqar_docs(count: int = DOCS, *, seed: int = 0, levels: tuple[int, ...] = MQAR_PAIRS) -> list[dict]:
    rng = random.Random(f"mqar-{seed}")
    # A generator of their own, so that the first n documents are the same whatever the count.
    golds = balanced(random.Random(f"mqar-gold-{seed}"), VALUES, count)
    docs = []
    for i in range(count):
        pairs = levels[i % len(levels)]
        keys = rng.sample(KEYS, pairs)
        queries = rng.sample(keys, min(MQAR_QUERIES, pairs))
        values = [golds[i] if key == queries[-1] else rng.choice(VALUES) for key in keys]
        table = dict(zip(keys, values, strict=True))
        stored = " , ".join(f"{k} {v}" for k, v in table.items())
        answered = "".join(f"{k} {table[k]} , " for k in queries[:-1])
        docs.append({"id": i, "context": f"{stored} . {answered}{queries[-1]}", "choices": [f" {v}" for v in VALUES],
                     "gold": VALUES.index(table[queries[-1]]), "level": pairs})
    return docs


def kv_docs(count: int = DOCS, *, seed: int = 0, levels: tuple[int, ...] = KV_DISTANCES) -> list[dict]:
    rng = random.Random(f"kv-{seed}")
    golds = balanced(random.Random(f"kv-gold-{seed}"), VALUES, count)
    targets = balanced(random.Random(f"kv-place-{seed}"), list(range(KV_FACTS)), count)
    docs = []
    for i in range(count):
        distance = levels[i % len(levels)]
        names = rng.sample(NAMES, KV_FACTS)
        target = targets[i]
        codes = rng.sample([v for v in VALUES if v != golds[i]], KV_FACTS - 1)
        codes.insert(target, golds[i])
        filler, words = [], 0
        while words < distance:
            sentence = rng.choice(FILLER)
            filler.append(sentence)
            words += len(sentence.split())
        facts = [f"The code of {n} is {c}." for n, c in zip(names, codes, strict=True)]
        text = " ".join([*facts, *filler, f"The code of {names[target]} is"])
        docs.append({"id": i, "context": text, "choices": [f" {c}" for c in codes], "gold": target, "level": distance})
    return docs


GENERATORS = {"recall_mqar": mqar_docs, "recall_kv": kv_docs}


def answer_from_context(task: str, context: str) -> str:
    """What a perfect associative memory answers, read from the prompt alone (the oracle of the tests)."""
    if task == "recall_mqar":
        stored, _ = context.split(" . ", 1)
        table = dict(item.split(" ") for item in stored.split(" , "))
        return f" {table[context.rsplit(' ', 1)[1]]}"
    if task == "recall_kv":
        facts, question = context.rsplit("The code of ", 1)
        name = question.removesuffix(" is")
        return " " + facts.split(f"The code of {name} is ", 1)[1].split(".", 1)[0]
    raise KeyError(task)
