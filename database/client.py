"""Typed async client of the candidate API, used by every other service.

    async with ApiClient("http://127.0.0.1:8000", token="...") as client:
        job = await client.lease_job(kinds=["train"], worker="trainer-1")

Connection errors and 5xx answers are retried with exponential backoff; 4xx answers raise
`ApiError` at once (409 on a job raises `LeaseLost`). Pass `transport=httpx.ASGITransport(app=app)`
to call an app in the same process without a socket.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, detail: Any, method: str = "", path: str = ""):
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status, self.detail = status, detail


class LeaseLost(ApiError):
    """The worker no longer holds the job's lease (it expired and the job moved on)."""


class ApiClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff_s: float = 0.2,
    ):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, transport=transport, timeout=timeout)
        self.retries, self.backoff_s = retries, backoff_s
        # Set by each lease: whether the API answered "nothing" because the run is paused.
        self.run_paused = False
        self._last_headers: httpx.Headers = httpx.Headers()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.retries + 1):
            try:
                response = await self.http.request(method, path, json=json, params=params)
                self._last_headers = response.headers
            except (httpx.TransportError, OSError) as err:
                if attempt == self.retries:
                    raise ApiError(0, f"cannot reach the API at {self.http.base_url}: {err!r}", method, path) from err
            else:
                if response.status_code < 500 or attempt == self.retries:
                    return self._decode(response, method, path)
            await asyncio.sleep(self.backoff_s * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    @staticmethod
    def _decode(response: httpx.Response, method: str, path: str) -> Any:
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            error = LeaseLost if response.status_code == 409 and path.startswith("/jobs/") else ApiError
            raise error(response.status_code, detail, method, path)
        return body

    # System

    async def health(self) -> dict:
        return await self.request("GET", "/health")

    async def stats(self) -> dict:
        return await self.request("GET", "/stats")

    # Experiments

    async def create_experiment(
        self, *, name: str, program: str, motivation: str = "", parent: int | None = None,
        references: list[int] | None = None, fidelity: str = "smoke", origin: str = "llm",
        is_baseline: bool = False, source_job: str | None = None, promoted_from: int | None = None,
    ) -> dict:
        body = {"name": name, "program": program, "motivation": motivation, "parent": parent,
                "references": list(references or []), "fidelity": fidelity, "origin": origin,
                "is_baseline": is_baseline, "source_job": source_job, "promoted_from": promoted_from}
        return await self.request("POST", "/experiments", json=body)

    async def get_experiment(self, index: int) -> dict:
        return await self.request("GET", f"/experiments/{index}")

    async def list_experiments(
        self, *, status: str | None = None, parent: int | None = None, fidelity: str | None = None,
        skip: int = 0, limit: int = 50,
    ) -> dict:
        params = {"status": status, "parent": parent, "fidelity": fidelity, "skip": skip, "limit": limit}
        return await self.request("GET", "/experiments", params=params)

    async def update_experiment(self, index: int, **fields: Any) -> dict:
        return await self.request("PATCH", f"/experiments/{index}", json=fields)

    async def score_experiment(self, index: int, judge_score: float | None = None) -> dict:
        return await self.request("POST", f"/experiments/{index}/score", json={"judge_score": judge_score})

    async def baseline(self, fidelity: str = "smoke") -> dict | None:
        try:
            return await self.request("GET", "/baseline", params={"fidelity": fidelity})
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def lineage(self, index: int) -> list[dict]:
        return await self.request("GET", f"/experiments/{index}/lineage")

    async def children(self, index: int) -> list[dict]:
        return await self.request("GET", f"/experiments/{index}/children")

    async def context(self, index: int) -> dict:
        return await self.request("GET", f"/experiments/{index}/context")

    async def tree(self) -> list[dict]:
        return await self.request("GET", "/tree")

    # Candidate pool

    async def candidates(self, k: int = 50, fidelity: str | None = None) -> list[dict]:
        return await self.request("GET", "/candidates", params={"k": k, "fidelity": fidelity})

    async def rebuild_candidates(self) -> dict:
        return await self.request("POST", "/candidates/rebuild")

    async def sample(self, strategy: str = "rank", fidelity: str | None = None, seed: int | None = None) -> dict:
        params = {"strategy": strategy, "fidelity": fidelity, "seed": seed}
        return await self.request("GET", "/candidates/sample", params=params)

    # Jobs

    async def create_job(
        self, *, kind: str, experiment: int | None = None, payload: dict | None = None, max_attempts: int = 3,
        timeout: float = 600.0,
    ) -> dict:
        body = {"kind": kind, "experiment": experiment, "payload": payload or {}, "max_attempts": max_attempts,
                "timeout": timeout}
        return await self.request("POST", "/jobs", json=body)

    async def get_job(self, job_id: str) -> dict:
        return await self.request("GET", f"/jobs/{job_id}")

    async def list_jobs(self, **filters: Any) -> dict:
        return await self.request("GET", "/jobs", params=filters)

    async def lease_job(self, kinds: list[str], worker: str) -> dict | None:
        job = await self.request("POST", "/jobs/lease", json={"kinds": list(kinds), "worker": worker})
        # Read before any other await, so that no concurrent request's headers are seen instead.
        self.run_paused = job is None and self._last_headers.get("x-run-paused") == "true"
        return job

    async def heartbeat(self, job_id: str, worker: str) -> dict:
        return await self.request("POST", f"/jobs/{job_id}/heartbeat", json={"worker": worker})

    async def complete_job(
        self, job_id: str, worker: str, result: dict | None = None, next_jobs: list[dict] | None = None
    ) -> dict:
        body = {"worker": worker, "result": result or {}, "next_jobs": next_jobs or []}
        return await self.request("POST", f"/jobs/{job_id}/complete", json=body)

    async def fail_job(self, job_id: str, worker: str, reason: str, retry: bool = True) -> dict:
        body = {"worker": worker, "reason": reason, "retry": retry}
        return await self.request("POST", f"/jobs/{job_id}/fail", json=body)

    # Search and cognition

    async def similar(self, text: str, k: int = 5, exclude: int | None = None) -> list[dict]:
        return await self.request("GET", "/search/similar", params={"text": text, "k": k, "exclude": exclude})

    async def add_cognition(self, entries: list[dict]) -> dict:
        return await self.request("POST", "/cognition", json={"entries": entries})

    async def search_cognition(self, q: str, k: int = 3) -> list[dict]:
        return await self.request("GET", "/cognition/search", params={"q": q, "k": k})

    # Steering

    async def submit_program(
        self, *, program: str, name: str | None = None, motivation: str | None = None, parent: int | None = None,
        fidelity: str | None = None, actor: str | None = None,
    ) -> dict:
        body = {"program": program, "name": name, "motivation": motivation, "parent": parent, "fidelity": fidelity,
                "actor": actor}
        return await self.request("POST", "/programs", json=body)

    async def veto(self, index: int, reason: str, actor: str | None = None) -> dict:
        return await self.request("POST", f"/experiments/{index}/veto", json={"reason": reason, "actor": actor})

    async def pause(self, actor: str | None = None, reason: str | None = None) -> dict:
        return await self.request("POST", "/control/pause", json={"actor": actor, "reason": reason})

    async def resume(self, actor: str | None = None, reason: str | None = None) -> dict:
        return await self.request("POST", "/control/resume", json={"actor": actor, "reason": reason})

    async def control(self) -> dict:
        return await self.request("GET", "/control")

    async def actions(self, limit: int = 500) -> list[dict]:
        return await self.request("GET", "/actions", params={"limit": limit})

    async def put_calibration(self, record: dict) -> dict:
        return await self.request("PUT", f"/calibrations/{record['fidelity']}", json=record)

    async def calibrations(self) -> dict:
        return await self.request("GET", "/calibrations")
