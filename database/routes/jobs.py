"""The job queue: workers lease jobs, heartbeat to keep them, and report the outcome."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query, Response, status

from database import steering
from database.deps import ReadAuth, SettingsDep, StoreDep, WriteAuth
from database.schemas import (
    JobComplete,
    JobCreate,
    JobFail,
    JobKind,
    JobLease,
    JobsPublic,
    JobStatus,
    WorkerRef,
)
from database.store import Conflict, NotFound

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _raise(err: Exception) -> None:
    code = 404 if isinstance(err, NotFound) else 409
    raise HTTPException(code, str(err)) from err


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[WriteAuth])
async def create_job(body: JobCreate, store: StoreDep) -> dict:
    if body.experiment is not None:
        try:
            await store.get_experiment(index=body.experiment)
        except NotFound as err:
            raise HTTPException(422, f"experiment: {err}") from err
    return await store.create_job(job=body.model_dump(mode="json"))


@router.get("", dependencies=[ReadAuth])
async def list_jobs(
    store: StoreDep,
    status: JobStatus | None = None,
    kind: JobKind | None = None,
    root: str | None = None,
    experiment: int | None = None,
    skip: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> JobsPublic:
    data, count = await store.list_jobs(
        status=status.value if status else None, kind=kind.value if kind else None, root=root,
        experiment=experiment, skip=skip, limit=limit,
    )
    return JobsPublic(data=data, count=count)


@router.post("/lease", dependencies=[WriteAuth], responses={
    204: {"description": "no job of these kinds is queued, or the run is paused (header X-Run-Paused: true)"}})
async def lease(body: JobLease, store: StoreDep, settings: SettingsDep):
    """Atomically claim the oldest queued job of the given kinds; 204 when there is none or the run is paused."""
    if await steering.is_paused(store):
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={steering.PAUSED_HEADER: "true"})
    job = await steering.lease(store, kinds=[k.value for k in body.kinds], worker=body.worker, now=time.time(),
                               lease_s=settings.default_lease_s)
    if job is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return job


@router.get("/{job_id}", dependencies=[ReadAuth])
async def get_job(job_id: str, store: StoreDep) -> dict:
    try:
        return await store.get_job(job_id=job_id)
    except NotFound as err:
        _raise(err)


@router.post("/{job_id}/heartbeat", dependencies=[WriteAuth])
async def heartbeat(job_id: str, body: WorkerRef, store: StoreDep) -> dict:
    """Extend the lease by the job's timeout; 409 when this worker no longer holds it."""
    try:
        return await store.heartbeat(job_id=job_id, worker=body.worker, now=time.time())
    except (NotFound, Conflict) as err:
        _raise(err)


@router.post("/{job_id}/complete", dependencies=[WriteAuth])
async def complete(job_id: str, body: JobComplete, store: StoreDep) -> dict:
    """Record the result and enqueue the follow-up jobs. Repeating it is a no-op; a stale worker gets 409."""
    try:
        done = await store.complete_job(
            job_id=job_id, worker=body.worker, result=body.result,
            next_jobs=[j.model_dump(mode="json", exclude_unset=True) for j in body.next_jobs], now=time.time(),
        )
    except (NotFound, Conflict) as err:
        _raise(err)
    await steering.cancel_if_vetoed(store, done.get("experiment"))
    return done


@router.post("/{job_id}/fail", dependencies=[WriteAuth])
async def fail(job_id: str, body: JobFail, store: StoreDep) -> dict:
    """Re-queue the job while attempts remain (and `retry` is true); otherwise fail it and its experiment."""
    try:
        return await store.fail_job(job_id=job_id, worker=body.worker, reason=body.reason, retry=body.retry,
                                    now=time.time())
    except (NotFound, Conflict) as err:
        _raise(err)
