"""The candidate pool: ranking, rebuilding and sampling parents."""

from __future__ import annotations

import random
from typing import Literal

from fastapi import APIRouter, HTTPException, Query

from database import pool
from database.deps import ReadAuth, SettingsDep, StoreDep, WriteAuth
from database.schemas import Fidelity, Sample
from database.settings import Settings
from database.store import Store

router = APIRouter(tags=["candidates"])


async def refresh_pool(store: Store, settings: Settings) -> list[dict]:
    """Rank every scored experiment and keep the best `pool_size` per fidelity."""
    scored = await store.scored_experiments()
    ranked: list[dict] = []
    for fidelity in sorted({e.get("fidelity") for e in scored}):
        ranked += pool.rank([e for e in scored if e.get("fidelity") == fidelity], settings.pool_size,
                            by=settings.pool_ranking, cost_weight=settings.cost_weight)
    await store.replace_pool(ranked=ranked)
    return ranked


@router.get("/candidates", dependencies=[ReadAuth])
async def candidates(
    store: StoreDep, k: int = Query(50, ge=1, le=1000), fidelity: Fidelity | None = None
) -> list[dict]:
    """The pool ranked by fitness, best first."""
    return await store.pool_entries(k=k, fidelity=fidelity.value if fidelity else None)


@router.post("/candidates/rebuild", dependencies=[WriteAuth])
async def rebuild(store: StoreDep, settings: SettingsDep) -> dict:
    ranked = await refresh_pool(store, settings)
    return {"pool_size": len(ranked), "indexes": [e["index"] for e in ranked]}


@router.get("/candidates/sample", dependencies=[ReadAuth])
async def sample(
    store: StoreDep,
    settings: SettingsDep,
    strategy: Literal["rank", "uct"] = "rank",
    fidelity: Fidelity | None = None,
    parent_top: int | None = Query(None, ge=1),
    references: int | None = Query(None, ge=0, le=50),
    c: float | None = Query(None, ge=0),
    seed: int | None = None,
) -> Sample:
    """A parent and references: uniform over the top ranks, or by UCT (mean fitness + exploration)."""
    ranked = await store.pool_entries(k=settings.pool_size, fidelity=fidelity.value if fidelity else None)
    if not ranked:
        raise HTTPException(404, "the candidate pool is empty: train and analyse a baseline first")
    rng = random.Random(seed)
    reference_count = settings.reference_count if references is None else references
    if strategy == "rank":
        parent, refs = pool.sample_by_rank(ranked, rng, parent_top or settings.parent_top, reference_count)
    else:
        scored = await store.scored_experiments(fidelity=fidelity.value if fidelity else None)
        children: dict[int, list[float]] = {}
        for e in scored:
            if e.get("parent") is not None:
                children.setdefault(e["parent"], []).append(e["fitness"])
        parent, refs = pool.sample_by_uct(ranked, children, rng, settings.uct_c if c is None else c, reference_count)
    return Sample(parent=parent, references=refs, strategy=strategy)
