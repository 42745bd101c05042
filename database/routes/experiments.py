"""Experiments: creation, stage results, genealogy and scoring."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, status

from database.deps import ReadAuth, SettingsDep, StoreDep, WriteAuth
from database.fitness import FitnessSettings, beats_baseline, combine, evidence, fitness_parts, seed_noise
from database.routes.candidates import refresh_pool
from database.schemas import (
    ExperimentContext,
    ExperimentCreate,
    ExperimentsPublic,
    ExperimentStatus,
    ExperimentUpdate,
    Fidelity,
    ScoreRequest,
)
from database.store import Conflict, NotFound

router = APIRouter(tags=["experiments"])


@router.post("/experiments", status_code=status.HTTP_201_CREATED, dependencies=[WriteAuth])
async def create_experiment(body: ExperimentCreate, store: StoreDep) -> dict:
    """Store a new candidate; its `index` comes from an atomic counter."""
    for index in [body.parent, *body.references]:
        if index is not None:
            try:
                await store.get_experiment(index=index)
            except NotFound as err:
                raise HTTPException(422, f"parent/references: {err}") from err
    try:
        return await store.create_experiment(fields=body.model_dump(mode="json"))
    except Conflict as err:
        raise HTTPException(409, str(err)) from err


@router.get("/experiments", dependencies=[ReadAuth])
async def list_experiments(
    store: StoreDep,
    status: ExperimentStatus | None = None,
    parent: int | None = None,
    fidelity: Fidelity | None = None,
    skip: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
) -> ExperimentsPublic:
    data, count = await store.list_experiments(
        status=status.value if status else None, parent=parent, fidelity=fidelity.value if fidelity else None,
        skip=skip, limit=limit,
    )
    return ExperimentsPublic(data=data, count=count)


async def _get(store, index: int) -> dict:
    try:
        return await store.get_experiment(index=index)
    except NotFound as err:
        raise HTTPException(404, str(err)) from err


@router.get("/experiments/{index}", dependencies=[ReadAuth])
async def get_experiment(index: int, store: StoreDep) -> dict:
    return await _get(store, index)


@router.patch("/experiments/{index}", dependencies=[WriteAuth])
async def update_experiment(index: int, body: ExperimentUpdate, store: StoreDep) -> dict:
    """Record stage results. Only the fields sent change; `costs` add to the totals."""
    fields = body.model_dump(mode="json", exclude_unset=True)
    costs = fields.pop("costs", None)
    try:
        return await store.update_experiment(index=index, fields=fields, costs=costs)
    except NotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post("/experiments/{index}/score", dependencies=[WriteAuth])
async def score_experiment(index: int, body: ScoreRequest, store: StoreDep, settings: SettingsDep) -> dict:
    """Fitness against the baseline of the same fidelity; marks the experiment analysed and updates the pool.

    An experiment without finite loss and benchmark results gets no fitness and stays out of the pool.
    """
    experiment = await _get(store, index)
    baseline = await store.baseline(fidelity=experiment["fidelity"])
    if baseline is None or not baseline.get("train") or not baseline.get("eval"):
        raise HTTPException(409, f"no trained and evaluated baseline for fidelity {experiment['fidelity']!r}")
    fitness_settings = FitnessSettings(
        weight_loss=settings.fitness_weight_loss, weight_benchmark=settings.fitness_weight_benchmark,
        weight_judge=settings.fitness_weight_judge, clip=settings.fitness_clip, slope=settings.fitness_slope,
        noise_se=settings.fitness_noise_se, beats_se=settings.fitness_beats_se,
    )
    # The rung's calibration knows its seed noise better than three seeds of one experiment do.
    noise = seed_noise(await store.calibrations.find_one({"_id": experiment["fidelity"]}))
    parts = fitness_parts(experiment, baseline, body.judge_score, fitness_settings, noise)
    fitness = combine(parts, fitness_settings)
    found = evidence(experiment, baseline, noise)
    beats = baseline["index"] != index and beats_baseline(found, fitness_settings)
    fields = {"fitness": fitness, "fitness_parts": {**parts, "baseline": baseline["index"]}, "evidence": found,
              "beats_baseline": beats}
    if fitness is None:
        fields.update(status="failed", failure={"stage": "analyse", "reason": f"no finite results to score: {parts}"})
    else:
        fields["status"] = "analysed"
    updated = await store.update_experiment(index=index, fields=fields)
    await refresh_pool(store, settings)
    return updated


@router.get("/baseline", dependencies=[ReadAuth])
async def baseline(store: StoreDep, fidelity: Fidelity = Fidelity.smoke) -> dict:
    found = await store.baseline(fidelity=fidelity.value)
    if found is None:
        raise HTTPException(404, f"no baseline stored for fidelity {fidelity.value!r}")
    return found


@router.get("/experiments/{index}/lineage", dependencies=[ReadAuth])
async def lineage(index: int, store: StoreDep) -> list[dict]:
    """The path from this experiment up to its root, this experiment first."""
    path, seen = [await _get(store, index)], {index}
    while path[-1].get("parent") is not None and path[-1]["parent"] not in seen:
        seen.add(path[-1]["parent"])
        try:
            path.append(await store.get_experiment(index=path[-1]["parent"]))
        except NotFound:
            break
    return path


@router.get("/experiments/{index}/children", dependencies=[ReadAuth])
async def children(index: int, store: StoreDep) -> list[dict]:
    await _get(store, index)
    return await store.children(index=index)


@router.get("/experiments/{index}/context", dependencies=[ReadAuth])
async def context(index: int, store: StoreDep, siblings: int = Query(3, ge=0, le=50)) -> ExperimentContext:
    """What a researcher reads before extending this experiment: parent, grandparent, strongest siblings."""
    experiment = await _get(store, index)
    parent = grandparent = None
    strongest: list[dict] = []
    if experiment.get("parent") is not None:
        parent = await _get(store, experiment["parent"])
        if parent.get("parent") is not None:
            grandparent = await _get(store, parent["parent"])
        kin = [e for e in await store.children(index=parent["index"]) if e["index"] != index]
        kin = [e for e in kin if isinstance(e.get("fitness"), (int, float))]
        strongest = sorted(kin, key=lambda e: -e["fitness"])[:siblings]
    return ExperimentContext(parent=parent, grandparent=grandparent, siblings=strongest)


@router.get("/tree", dependencies=[ReadAuth])
async def tree(store: StoreDep) -> list[dict]:
    """The whole genealogy, compact: index, name, parent, status, fitness."""
    return await store.genealogy()
