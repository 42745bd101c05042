"""Every MongoDB call of the project, behind keyword-only methods.

Written for the plain pymongo async driver so that it behaves the same on real MongoDB and on the
embedded nx-27017 server. Two rules keep it portable: times are stored as epoch-second floats (the
embedded server turns datetimes written with `$set` into strings), and documents are inserted with
every field present (the embedded server matches a missing field with `$ne: null`).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

STAGES = ["research", "engineer", "train", "evaluate", "analyse"]
NEXT_STAGE = {"research": "engineer", "engineer": "train", "train": "evaluate", "evaluate": "analyse"}
EXPERIMENT_STATUSES = ["proposed", "checked", "trained", "evaluated", "analysed", "quarantined", "failed", "vetoed"]
JOB_STATUSES = ["queued", "running", "succeeded", "failed"]
COST_FIELDS = ["llm_tokens", "gpu_seconds", "cpu_seconds"]


class NotFound(Exception):
    """The named document does not exist."""


class Conflict(Exception):
    """The request contradicts the stored state (a duplicate name, a lost lease)."""


def _job_public(doc: dict | None) -> dict | None:
    if doc is not None:
        doc["id"] = doc.pop("_id")
    return doc


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Store:
    """The database of one deployment. `await Store.connect(url, db)`, then `await store.init()`."""

    def __init__(self, client: AsyncMongoClient, db_name: str):
        self.client = client
        self.db = client[db_name]
        self.experiments = self.db["experiments"]
        self.jobs = self.db["jobs"]
        self.counters = self.db["counters"]
        self.pool = self.db["pool"]
        self.cognition = self.db["cognition"]
        self.calibrations = self.db["calibrations"]

    @classmethod
    def connect(cls, url: str, db_name: str) -> Store:
        return cls(AsyncMongoClient(url, tz_aware=False, serverSelectionTimeoutMS=10_000), db_name)

    async def init(self) -> None:
        await self.experiments.create_index([("index", ASCENDING)], unique=True)
        await self.experiments.create_index([("name", ASCENDING)], unique=True)
        await self.experiments.create_index([("parent", ASCENDING)])
        await self.jobs.create_index([("status", ASCENDING), ("kind", ASCENDING), ("created_at", ASCENDING)])

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> bool:
        await self.db.command("ping")
        return True

    # Experiments

    async def next_index(self, *, name: str = "experiment") -> int:
        counter = await self.counters.find_one_and_update(
            {"_id": name}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return int(counter["seq"])

    async def create_experiment(self, *, fields: dict) -> dict:
        source_job = fields.get("source_job")
        if source_job:
            # A research job retried after a lost response must not create its experiment twice.
            existing = await self.experiments.find_one({"source_job": source_job}, {"_id": 0})
            if existing is not None:
                return existing
        if await self.experiments.find_one({"name": fields["name"]}, {"_id": 1}):
            raise Conflict(f"an experiment named {fields['name']!r} exists already")
        now = time.time()
        doc = {
            "parent": None, "references": [], "motivation": "", "fidelity": "smoke", "origin": "llm",
            "is_baseline": False, "source_job": None, **fields,
            "index": await self.next_index(),
            "status": "proposed", "check": None, "train": None, "eval": None, "analysis": None,
            "fitness": None, "fitness_parts": None, "failure": None, "attempts": [],
            "costs": {name: 0 for name in COST_FIELDS}, "created_at": now, "updated_at": now,
        }
        try:
            await self.experiments.insert_one(doc)
        except DuplicateKeyError as err:
            raise Conflict(f"an experiment named {fields['name']!r} exists already") from err
        doc.pop("_id", None)
        return doc

    async def get_experiment(self, *, index: int) -> dict:
        doc = await self.experiments.find_one({"index": index}, {"_id": 0})
        if doc is None:
            raise NotFound(f"experiment {index} does not exist")
        return doc

    async def list_experiments(
        self, *, status: str | None = None, parent: int | None = None, fidelity: str | None = None,
        skip: int = 0, limit: int = 50,
    ) -> tuple[list[dict], int]:
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status
        if parent is not None:
            query["parent"] = parent
        if fidelity is not None:
            query["fidelity"] = fidelity
        total = await self.experiments.count_documents(query)
        cursor = self.experiments.find(query, {"_id": 0}).sort("index", ASCENDING).skip(skip).limit(limit)
        return await cursor.to_list(), total

    async def update_experiment(self, *, index: int, fields: dict, costs: dict | None = None) -> dict:
        update: dict[str, Any] = {"$set": {**fields, "updated_at": time.time()}}
        if costs:
            update["$inc"] = {f"costs.{name}": value for name, value in costs.items()}
        if fields.get("status") not in (None, "vetoed"):
            # A veto is final (database.steering): later stage results are recorded, the status stays.
            doc = await self.experiments.find_one_and_update(
                {"index": index, "status": {"$ne": "vetoed"}}, update, projection={"_id": 0},
                return_document=ReturnDocument.AFTER)
            if doc is not None:
                return doc
            update["$set"].pop("status")
        doc = await self.experiments.find_one_and_update(
            {"index": index}, update, projection={"_id": 0}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise NotFound(f"experiment {index} does not exist")
        return doc

    async def fail_experiment(self, *, index: int, stage: str, reason: str) -> None:
        await self.experiments.update_one(
            {"index": index, "status": {"$ne": "vetoed"}},
            {"$set": {"status": "failed", "failure": {"stage": stage, "reason": reason}, "updated_at": time.time()}},
        )

    async def children(self, *, index: int) -> list[dict]:
        return await self.experiments.find({"parent": index}, {"_id": 0}).sort("index", ASCENDING).to_list()

    async def genealogy(self) -> list[dict]:
        fields = {"_id": 0, "index": 1, "name": 1, "parent": 1, "status": 1, "fitness": 1, "fidelity": 1,
                  "is_baseline": 1, "origin": 1}
        return await self.experiments.find({}, fields).sort("index", ASCENDING).to_list()

    async def baseline(self, *, fidelity: str) -> dict | None:
        cursor = self.experiments.find({"is_baseline": True, "fidelity": fidelity}, {"_id": 0})
        found = await cursor.sort("index", DESCENDING).to_list()
        # The newest baseline that finished its training and evaluation is the reference.
        for doc in found:
            if doc.get("train") and doc.get("eval"):
                return doc
        return found[0] if found else None

    async def scored_experiments(self, *, fidelity: str | None = None) -> list[dict]:
        query: dict[str, Any] = {"status": "analysed"}
        if fidelity is not None:
            query["fidelity"] = fidelity
        docs = await self.experiments.find(query, {"_id": 0, "program": 0}).to_list()
        return [doc for doc in docs if _finite(doc.get("fitness"))]

    async def experiment_stats(self) -> dict:
        docs = await self.experiments.find({}, {"_id": 0, "status": 1, "costs": 1}).to_list()
        by_status = {status: 0 for status in EXPERIMENT_STATUSES}
        costs = {name: 0.0 for name in COST_FIELDS}
        for doc in docs:
            by_status[doc.get("status", "proposed")] = by_status.get(doc.get("status", "proposed"), 0) + 1
            for name in COST_FIELDS:
                value = (doc.get("costs") or {}).get(name)
                costs[name] += value if _finite(value) else 0
        return {"experiments": len(docs), "by_status": by_status, "costs": costs}

    # Candidate pool

    async def replace_pool(self, *, ranked: list[dict]) -> None:
        await self.pool.delete_many({})
        if ranked:
            await self.pool.insert_many(
                [{"_id": doc["index"], "index": doc["index"], "rank": rank, "fitness": doc["fitness"],
                  "fidelity": doc.get("fidelity")} for rank, doc in enumerate(ranked, start=1)]
            )

    async def pool_entries(self, *, k: int, fidelity: str | None = None) -> list[dict]:
        query = {"fidelity": fidelity} if fidelity else {}
        entries = await self.pool.find(query, {"_id": 0}).sort("rank", ASCENDING).limit(k).to_list()
        if not entries:
            return []
        indexes = [entry["index"] for entry in entries]
        docs = await self.experiments.find({"index": {"$in": indexes}}, {"_id": 0}).to_list()
        by_index = {doc["index"]: doc for doc in docs}
        return [by_index[i] for i in indexes if i in by_index]

    async def pool_size(self) -> int:
        return await self.pool.count_documents({})

    # Jobs

    async def create_job(self, *, job: dict) -> dict:
        now = time.time()
        doc = {
            "_id": job.get("id") or uuid.uuid4().hex, "kind": job["kind"], "experiment": job.get("experiment"),
            "payload": job.get("payload") or {}, "status": "queued", "worker": None, "lease_expires_at": 0.0,
            "attempts": 0, "max_attempts": job.get("max_attempts", 3), "timeout": float(job.get("timeout", 600)),
            "result": None, "error": None, "errors": [], "root": job.get("root"), "created_at": now,
            "updated_at": now,
        }
        doc["root"] = doc["root"] or doc["_id"]
        try:
            await self.jobs.insert_one(doc)
        except DuplicateKeyError:
            # Same id means the same follow-up job: creating it again is a no-op.
            return _job_public(await self.jobs.find_one({"_id": doc["_id"]}))
        return _job_public(doc)

    async def get_job(self, *, job_id: str) -> dict:
        doc = await self.jobs.find_one({"_id": job_id})
        if doc is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return _job_public(doc)

    async def list_jobs(
        self, *, status: str | None = None, kind: str | None = None, root: str | None = None,
        experiment: int | None = None, skip: int = 0, limit: int = 100,
    ) -> tuple[list[dict], int]:
        query: dict[str, Any] = {}
        for field, value in (("status", status), ("kind", kind), ("root", root), ("experiment", experiment)):
            if value is not None:
                query[field] = value
        total = await self.jobs.count_documents(query)
        docs = await self.jobs.find(query).sort("created_at", ASCENDING).skip(skip).limit(limit).to_list()
        return [_job_public(doc) for doc in docs], total

    async def job_counts(self) -> dict:
        docs = await (await self.jobs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])).to_list()
        counts = {status: 0 for status in JOB_STATUSES}
        counts.update({doc["_id"]: doc["n"] for doc in docs})
        return counts

    async def lease_job(self, *, kinds: list[str], worker: str, now: float, lease_s: float) -> dict | None:
        doc = await self.jobs.find_one_and_update(
            {"status": "queued", "kind": {"$in": kinds}},
            {"$set": {"status": "running", "worker": worker, "lease_expires_at": now + lease_s, "updated_at": now},
             "$inc": {"attempts": 1}},
            sort=[("created_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        if doc["timeout"] != lease_s:
            # The claim used a default length; the job's own timeout sets the real deadline.
            doc = await self.jobs.find_one_and_update(
                {"_id": doc["_id"], "worker": worker, "status": "running"},
                {"$set": {"lease_expires_at": now + doc["timeout"]}},
                return_document=ReturnDocument.AFTER,
            ) or doc
        return _job_public(doc)

    async def heartbeat(self, *, job_id: str, worker: str, now: float) -> dict:
        current = await self.get_job(job_id=job_id)
        doc = await self.jobs.find_one_and_update(
            {"_id": job_id, "status": "running", "worker": worker, "lease_expires_at": {"$gte": now}},
            {"$set": {"lease_expires_at": now + current["timeout"], "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise Conflict(f"job {job_id!r} is not leased by {worker!r} any more (status {current['status']}, "
                           f"worker {current['worker']!r})")
        return _job_public(doc)

    async def complete_job(self, *, job_id: str, worker: str, result: dict, next_jobs: list[dict], now: float) -> dict:
        current = await self.get_job(job_id=job_id)
        if current["status"] == "succeeded" and current["worker"] == worker:
            return current
        if current["status"] != "running" or current["worker"] != worker:
            raise Conflict(f"job {job_id!r} is not leased by {worker!r} (status {current['status']}, "
                           f"worker {current['worker']!r})")
        if current["lease_expires_at"] < now:
            # The reaper may not have run yet; the job is another worker's to take all the same.
            raise Conflict(f"job {job_id!r}: the lease of {worker!r} expired {now - current['lease_expires_at']:.1f} s "
                           "ago; the job goes back to the queue")
        # Follow-ups first, with ids derived from this job: if the API dies before the job is marked
        # done, the repeated completion re-creates nothing, and nothing is lost.
        for number, follow in enumerate(next_jobs):
            # A follow-up keeps the chain's lease length and attempts unless it names its own.
            inherited = {"timeout": current["timeout"], "max_attempts": current["max_attempts"]}
            await self.create_job(job={**inherited, **follow, "id": f"{job_id}.{number}", "root": current["root"]})
        doc = await self.jobs.find_one_and_update(
            {"_id": job_id, "status": "running", "worker": worker},
            {"$set": {"status": "succeeded", "result": result, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return await self.complete_job(job_id=job_id, worker=worker, result=result, next_jobs=[], now=now)
        return _job_public(doc)

    async def fail_job(self, *, job_id: str, worker: str, reason: str, retry: bool, now: float) -> dict:
        current = await self.get_job(job_id=job_id)
        if current["status"] in ("failed", "queued") and current["worker"] in (worker, None) and current["error"] == reason:
            return current
        if current["status"] != "running" or current["worker"] != worker:
            raise Conflict(f"job {job_id!r} is not leased by {worker!r} (status {current['status']}, "
                           f"worker {current['worker']!r})")
        return await self._end_attempt(current=current, reason=reason, retry=retry, now=now,
                                       match={"worker": worker})

    async def _end_attempt(self, *, current: dict, reason: str, retry: bool, now: float, match: dict) -> dict:
        requeue = retry and current["attempts"] < current["max_attempts"]
        update: dict[str, Any] = {"error": reason, "updated_at": now}
        if requeue:
            update.update(status="queued", worker=None, lease_expires_at=0.0)
        else:
            update.update(status="failed")
        errors = [*current.get("errors", []), {"attempt": current["attempts"], "reason": reason}]
        update["errors"] = errors
        doc = await self.jobs.find_one_and_update(
            {"_id": current["id"], "status": "running", **match},
            {"$set": update},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise Conflict(f"job {current['id']!r} changed while it was being failed")
        if not requeue and current.get("experiment") is not None:
            await self.fail_experiment(index=current["experiment"], stage=current["kind"], reason=reason)
        return _job_public(doc)

    async def reap_expired(self, *, now: float) -> list[dict]:
        """Re-queue (or fail, when attempts are spent) every running job whose lease has expired."""
        expired = await self.jobs.find({"status": "running", "lease_expires_at": {"$lt": now}}).to_list()
        reaped = []
        for doc in expired:
            current = _job_public(doc)
            reason = (f"lease expired: worker {current['worker']!r} sent no heartbeat for "
                      f"{current['timeout']:.0f}s (attempt {current['attempts']} of {current['max_attempts']})")
            try:
                reaped.append(await self._end_attempt(
                    current=current, reason=reason, retry=True, now=now,
                    match={"worker": current["worker"], "lease_expires_at": {"$lt": now}},
                ))
            except Conflict:
                continue
        return reaped

    # Cognition

    async def add_cognition(self, *, entries: list[dict]) -> int:
        added = 0
        for entry in entries:
            try:
                await self.cognition.insert_one(dict(entry))
                added += 1
            except DuplicateKeyError:
                continue
        return added

    async def all_cognition(self) -> list[dict]:
        return await self.cognition.find({}).to_list()

    async def cognition_count(self) -> int:
        return await self.cognition.count_documents({})

    async def motivations(self, *, exclude: int | None = None) -> list[dict]:
        query = {"index": {"$ne": exclude}} if exclude is not None else {}
        fields = {"_id": 0, "index": 1, "name": 1, "motivation": 1}
        return await self.experiments.find(query, fields).to_list()
