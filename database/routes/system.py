"""Health and statistics."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from database.deps import ReadAuth, StoreDep

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(store: StoreDep) -> dict:
    """Database reachable, with counts; 503 when the database does not answer."""
    try:
        await store.ping()
        experiments = await store.experiments.estimated_document_count()
        jobs = await store.job_counts()
    except Exception as err:
        raise HTTPException(503, f"database unreachable: {err}") from err
    return {"status": "ok", "database": "reachable", "experiments": experiments, "jobs": jobs}


@router.get("/stats", dependencies=[ReadAuth])
async def stats(store: StoreDep) -> dict:
    """Experiments by status, pool size, jobs by status, GPU seconds and LLM tokens spent."""
    summary = await store.experiment_stats()
    return {**summary, "pool_size": await store.pool_size(), "jobs": await store.job_counts(),
            "cognition_entries": await store.cognition_count()}
