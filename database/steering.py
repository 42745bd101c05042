"""Steering a run by hand: submitted programs, vetoes, pause and resume, each recorded as an action.

Two collections sit beside the experiments: `control` holds one document (`_id` "run") that says
whether the run is paused, and `actions` one document per steering action, numbered by a counter so
that newest-first is exact. As everywhere in the store, times are kept as epoch seconds; they are
answered as ISO 8601 text.

- A submitted program becomes an experiment of origin `human` whose first job is an `engineer` job,
  so it is checked, trained, evaluated and analysed like any other candidate. The job copies the
  run's settings (fidelity, seed, lease, overrides) from the newest chain at the same fidelity.
- A vetoed experiment keeps status `vetoed` whatever its running jobs report afterwards (see
  `Store.update_experiment`); it leaves the pool, which ranks only `analysed` experiments, and its
  queued jobs are cancelled: failed with a reason that names the veto.
- While the run is paused the queue leases nothing; leased jobs keep their leases.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from database.store import Conflict, Store

VETOED = "vetoed"
DEFAULT_ACTOR = "api"
PAUSED_HEADER = "X-Run-Paused"
# What a chain's payload carries for the whole run, as opposed to one chain's own seeds or repairs.
RUN_PAYLOAD_KEYS = ("fidelity", "seed", "lease_s", "overrides")
CONTROL_ID = "run"


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def actor(name: str | None) -> str:
    return (name or "").strip() or DEFAULT_ACTOR


async def record(store: Store, *, action: str, target: int | None, by: str, detail: dict, now: float) -> dict:
    doc = {"seq": await store.next_index(name="action"), "action": action, "target": target, "by": by, "at": now,
           "detail": detail}
    await store.db["actions"].insert_one(dict(doc))
    return public_action(doc)


def public_action(doc: dict) -> dict:
    return {"action": doc["action"], "target": doc.get("target"), "by": doc["by"], "at": iso(doc["at"]),
            "detail": doc.get("detail") or {}}


async def actions(store: Store, *, limit: int = 200) -> list[dict]:
    docs = await store.db["actions"].find({}, {"_id": 0}).sort("seq", DESCENDING).limit(limit).to_list()
    return [public_action(doc) for doc in docs]


# Submitted programs

async def default_fidelity(store: Store) -> str:
    """The first rung of the run: the fidelity of its oldest baseline (a run starts at its cheapest)."""
    found = await store.experiments.find({"is_baseline": True}, {"_id": 0, "fidelity": 1}).sort(
        "index", ASCENDING).limit(1).to_list()
    return found[0]["fidelity"] if found else "smoke"


async def chain_template(store: Store, fidelity: str) -> dict:
    """Payload, lease and attempts of the newest engineer job at this fidelity, so that a hand-written
    candidate is trained on the same budget and seeds as the run's own."""
    found = await store.jobs.find({"kind": "engineer", "payload.fidelity": fidelity}).sort(
        "created_at", DESCENDING).limit(1).to_list()
    if not found:
        return {"payload": {"fidelity": fidelity}}
    job = found[0]
    payload = {key: job["payload"][key] for key in RUN_PAYLOAD_KEYS if key in (job.get("payload") or {})}
    return {"payload": payload, "timeout": job.get("timeout", 600.0), "max_attempts": job.get("max_attempts", 3)}


async def _create_named(store: Store, fields: dict, name: str | None, program: str) -> dict:
    if name:
        return await store.create_experiment(fields={**fields, "name": name})
    stem = f"human-{hashlib.sha256(program.encode()).hexdigest()[:8]}"
    for number in range(1, 100):
        try:
            return await store.create_experiment(fields={**fields, "name": stem if number == 1 else f"{stem}-{number}"})
        except Conflict:
            continue
    raise Conflict(f"no free name for {stem!r}: name the program")


async def submit_program(store: Store, *, program: str, name: str | None = None, motivation: str | None = None,
                         parent: int | None = None, fidelity: str | None = None, by: str | None = None) -> dict:
    """Store a hand-written program as a candidate (origin `human`) and queue its check.

    NotFound when `parent` does not exist; Conflict when `name` is taken.
    """
    by = actor(by)
    parent_doc = await store.get_experiment(index=parent) if parent is not None else None
    fidelity = fidelity or (parent_doc or {}).get("fidelity") or await default_fidelity(store)
    fields = {"program": program, "motivation": motivation or f"A program submitted by hand by {by}.",
              "parent": parent, "references": [], "fidelity": fidelity, "origin": "human", "is_baseline": False,
              "submitted_by": by}
    experiment = await _create_named(store, fields, name, program)
    template = await chain_template(store, fidelity)
    job = await store.create_job(job={**template, "kind": "engineer", "experiment": experiment["index"]})
    await record(store, action="submit", target=experiment["index"], by=by, now=time.time(),
                 detail={"name": experiment["name"], "fidelity": fidelity, "parent": parent, "job": job["id"]})
    return experiment


# Vetoes

async def cancel_queued(store: Store, *, index: int, reason: str) -> list[str]:
    """Fail every queued job of experiment `index` with `reason`; returns their ids."""
    queued = await store.jobs.find({"experiment": index, "status": "queued"}, {"_id": 1}).to_list()
    cancelled = []
    for doc in queued:
        done = await store.jobs.find_one_and_update(
            {"_id": doc["_id"], "status": "queued"},
            {"$set": {"status": "failed", "error": reason, "cancelled": True, "updated_at": time.time()}},
        )
        if done is not None:
            cancelled.append(doc["_id"])
    return cancelled


def _veto_reason(experiment: dict) -> str:
    veto = experiment.get("veto") or {}
    return f"cancelled: experiment #{experiment['index']} was vetoed by {veto.get('by')}: {veto.get('reason')}"


async def veto(store: Store, *, index: int, reason: str, by: str | None = None) -> dict:
    """Mark the experiment vetoed and cancel its queued jobs. NotFound for an unknown index; Conflict for
    a baseline, which every fitness is measured against. Vetoing again changes nothing."""
    by = actor(by)
    experiment = await store.get_experiment(index=index)
    if experiment.get("status") == VETOED:
        return experiment
    if experiment.get("is_baseline"):
        raise Conflict(f"experiment {index} is the baseline at {experiment.get('fidelity')!r}: every fitness is "
                       "measured against it, so it cannot be vetoed")
    now = time.time()
    updated = await store.experiments.find_one_and_update(
        {"index": index},
        {"$set": {"status": VETOED, "veto": {"reason": reason, "by": by, "at": iso(now),
                                              "status_before": experiment.get("status")}, "updated_at": now}},
        projection={"_id": 0}, return_document=ReturnDocument.AFTER,
    )
    cancelled = await cancel_queued(store, index=index, reason=_veto_reason(updated))
    await record(store, action="veto", target=index, by=by, now=now,
                 detail={"reason": reason, "name": updated["name"], "cancelled_jobs": cancelled})
    return updated


async def is_vetoed(store: Store, index: int | None) -> dict | None:
    if index is None:
        return None
    doc = await store.experiments.find_one({"index": index, "status": VETOED}, {"_id": 0, "program": 0})
    return doc


async def cancel_if_vetoed(store: Store, index: int | None) -> None:
    """After a job of a vetoed experiment completes, its follow-ups are cancelled at once."""
    experiment = await is_vetoed(store, index)
    if experiment is not None:
        await cancel_queued(store, index=index, reason=_veto_reason(experiment))


# Pause and resume

async def control(store: Store) -> dict:
    doc = await store.db["control"].find_one({"_id": CONTROL_ID}) or {}
    return {"paused": bool(doc.get("paused")), "since": iso(doc.get("since")), "by": doc.get("by"),
            "reason": doc.get("reason")}


async def is_paused(store: Store) -> bool:
    return bool((await store.db["control"].find_one({"_id": CONTROL_ID}) or {}).get("paused"))


async def set_paused(store: Store, *, paused: bool, by: str | None = None, reason: str | None = None) -> dict:
    """Pause or resume the run. `since`, `by` and `reason` describe the last change; repeating one is a no-op."""
    by = actor(by)
    if await is_paused(store) == paused:
        return await control(store)
    now = time.time()
    await store.db["control"].update_one(
        {"_id": CONTROL_ID}, {"$set": {"paused": paused, "since": now, "by": by, "reason": reason}}, upsert=True)
    await record(store, action="pause" if paused else "resume", target=None, by=by, now=now,
                 detail={"reason": reason})
    return await control(store)


async def lease(store: Store, *, kinds: list[str], worker: str, now: float, lease_s: float) -> dict | None:
    """The queue's lease, minus jobs of vetoed experiments (cancelled as they come up, e.g. after a reap)."""
    for _ in range(100):
        job = await store.lease_job(kinds=kinds, worker=worker, now=now, lease_s=lease_s)
        if job is None:
            return None
        experiment = await is_vetoed(store, job.get("experiment"))
        if experiment is None:
            return job
        await store.jobs.update_one({"_id": job["id"], "status": "running", "worker": worker},
                                    {"$set": {"status": "failed", "error": _veto_reason(experiment),
                                              "cancelled": True, "updated_at": now}})
    return None

