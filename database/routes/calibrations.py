"""Calibrations: how well each fidelity ranks the reference panel (written by `agent.calibrate`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from database.bson_safe import check
from database.deps import ReadAuth, StoreDep, WriteAuth
from database.schemas import Fidelity

router = APIRouter(tags=["calibrations"])


@router.put("/calibrations/{fidelity}", dependencies=[WriteAuth])
async def put_calibration(fidelity: str, body: dict[str, Any], store: StoreDep) -> dict:
    """Store (replace) the calibration of a rung: programs with mean ± SE, Spearman correlations."""
    if fidelity not in Fidelity.__members__:
        raise HTTPException(404, f"no fidelity named {fidelity!r}; fidelities are {list(Fidelity.__members__)}")
    fidelity = Fidelity(fidelity)
    try:
        check(body)
    except ValueError as err:
        raise HTTPException(422, str(err)) from err
    if body.get("fidelity") not in (None, fidelity.value):
        raise HTTPException(422, f"the body is the calibration of {body.get('fidelity')!r}, not {fidelity.value!r}")
    await store.calibrations.replace_one({"_id": fidelity.value}, {**body, "fidelity": fidelity.value}, upsert=True)
    return {"fidelity": fidelity.value, "stored": True}


@router.get("/calibrations", dependencies=[ReadAuth])
async def list_calibrations(store: StoreDep) -> dict[str, Any]:
    """Every calibrated rung, by fidelity."""
    return {doc["fidelity"]: {k: v for k, v in doc.items() if k != "_id"} async for doc in store.calibrations.find({})}
