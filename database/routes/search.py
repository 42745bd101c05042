"""Similarity search over motivations, and the cognition base of research insights."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Query, status

from database.deps import ReadAuth, SimilarityDep, StoreDep, WriteAuth
from database.schemas import CognitionCreate, SimilarHit

router = APIRouter(tags=["search"])

# Published cognition entries carry these upper-case fields; ours use title/text.
PUBLISHED_FIELDS = ["DESIGN_INSIGHT", "EXPERIMENTAL_TRIGGER_PATTERNS", "BACKGROUND", "ALGORITHMIC_INNOVATION",
                    "IMPLEMENTATION_GUIDANCE", "DESIGN_AI_INSTRUCTIONS"]


def cognition_text(entry: dict) -> str:
    parts = [entry.get("title"), entry.get("text"), *(entry.get(f) for f in PUBLISHED_FIELDS)]
    return "\n\n".join(str(p) for p in parts if p)


@router.get("/search/similar", dependencies=[ReadAuth])
async def similar(
    store: StoreDep, similarity: SimilarityDep, text: str = Query(min_length=1, max_length=20_000),
    k: int = Query(5, ge=1, le=100), exclude: int | None = None,
) -> list[SimilarHit]:
    """The k stored motivations most similar to `text`, best first."""
    docs = [d for d in await store.motivations(exclude=exclude) if d.get("motivation")]
    scores = similarity.scores(text, [d["motivation"] for d in docs])
    ranked = sorted(zip(scores, docs, strict=True), key=lambda pair: -pair[0])[:k]
    return [SimilarHit(index=d["index"], name=d["name"], motivation=d["motivation"], score=s) for s, d in ranked]


@router.post("/cognition", status_code=status.HTTP_201_CREATED, dependencies=[WriteAuth])
async def add_cognition(body: CognitionCreate, store: StoreDep) -> dict:
    """Add entries (ours or in the published format); an entry already stored is skipped."""
    entries = []
    for entry in body.entries:
        doc = entry.model_dump(exclude_none=True)
        text = cognition_text(doc)
        if not text.strip():
            continue
        entries.append({**doc, "_id": hashlib.sha1(text.encode()).hexdigest(), "search_text": text})
    added = await store.add_cognition(entries=entries)
    return {"received": len(body.entries), "added": added, "skipped": len(body.entries) - added}


@router.get("/cognition/search", dependencies=[ReadAuth])
async def search_cognition(
    store: StoreDep, similarity: SimilarityDep, q: str = Query(min_length=1, max_length=20_000),
    k: int = Query(3, ge=1, le=50),
) -> list[dict]:
    """The k entries most relevant to the query, best first, each with its score."""
    docs = await store.all_cognition()
    scores = similarity.scores(q, [d["search_text"] for d in docs])
    ranked = sorted(zip(scores, docs, strict=True), key=lambda pair: -pair[0])[:k]
    return [{**{key: v for key, v in d.items() if key not in ("_id", "search_text")}, "id": d["_id"], "score": s}
            for s, d in ranked]
