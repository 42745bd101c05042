"""Steering by hand: submit a program, veto an experiment, pause and resume the run, and the record of it all.

Writes need the token; `GET /control` and `GET /actions` are reads. Each action names who did it
(`actor`, "api" when not given) and is listed, newest first, by `GET /actions`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, status

from database import steering
from database.deps import ReadAuth, SettingsDep, StoreDep, WriteAuth
from database.routes.candidates import refresh_pool
from database.schemas import ControlRequest, ControlState, ProgramSubmit, SteeringAction, VetoRequest
from database.store import Conflict, NotFound

router = APIRouter(tags=["steering"])


@router.post("/programs", status_code=status.HTTP_201_CREATED, dependencies=[WriteAuth],
             responses={409: {"description": "the name is taken"}})
async def submit_program(body: ProgramSubmit, store: StoreDep) -> dict:
    """A hand-written program as a candidate (origin `human`): checked, trained, evaluated and analysed
    like any other. Its engineer job is queued with the run's settings at that fidelity."""
    try:
        return await steering.submit_program(
            store, program=body.program, name=body.name, motivation=body.motivation, parent=body.parent,
            fidelity=body.fidelity.value if body.fidelity else None, by=body.actor)
    except NotFound as err:
        raise HTTPException(422, f"parent: {err}") from err
    except Conflict as err:
        raise HTTPException(409, str(err)) from err


@router.post("/experiments/{index}/veto", dependencies=[WriteAuth],
             responses={404: {"description": "no such experiment"}, 409: {"description": "a baseline"}})
async def veto(index: int, body: VetoRequest, store: StoreDep, settings: SettingsDep) -> dict:
    """Take the experiment out of the run: status `vetoed`, out of the pool, never sampled as a parent,
    its queued jobs cancelled. The reason is kept in `veto: {reason, by, at}`."""
    try:
        experiment = await steering.veto(store, index=index, reason=body.reason, by=body.actor)
    except NotFound as err:
        raise HTTPException(404, str(err)) from err
    except Conflict as err:
        raise HTTPException(409, str(err)) from err
    await refresh_pool(store, settings)
    return experiment


Control = Annotated[ControlRequest | None, Body()]


@router.post("/control/pause", dependencies=[WriteAuth])
async def pause(store: StoreDep, body: Control = None) -> ControlState:
    """Lease nothing new until resumed (`POST /jobs/lease` answers 204); leased jobs keep their leases."""
    body = body or ControlRequest()
    return ControlState(**await steering.set_paused(store, paused=True, by=body.actor, reason=body.reason))


@router.post("/control/resume", dependencies=[WriteAuth])
async def resume(store: StoreDep, body: Control = None) -> ControlState:
    body = body or ControlRequest()
    return ControlState(**await steering.set_paused(store, paused=False, by=body.actor, reason=body.reason))


@router.get("/control", dependencies=[ReadAuth])
async def control(store: StoreDep) -> ControlState:
    """Whether the run is paused; `since`, `by` and `reason` describe the last pause or resume."""
    return ControlState(**await steering.control(store))


@router.get("/actions", dependencies=[ReadAuth])
async def actions(store: StoreDep, limit: int = Query(500, ge=1, le=5000)) -> list[SteeringAction]:
    """Every steering action (submit, veto, pause, resume), newest first."""
    return [SteeringAction(**action) for action in await steering.actions(store, limit=limit)]
