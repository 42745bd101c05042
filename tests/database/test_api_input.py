"""Input MongoDB cannot store gets 422 in the schema's shape, never 500; an expired lease cannot complete."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from database.store import Conflict
from tests.conftest import TEST_TOKEN

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
async def raw(api_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api") as client:
        yield client


def assert_schema_422(response: httpx.Response) -> list[dict]:
    assert response.status_code == 422, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail and all({"loc", "msg", "type"} <= set(d) for d in detail), detail
    return detail


@pytest.mark.parametrize("body, where", [
    ('{"kind": "train", "payload": {"n": 9223372036854775808}}', "outside int64"),
    ('{"kind": "train", "experiment": 9223372036854775808}', "int64"),
    ('{"kind": "train", "payload": {"a\\u0000b": 1}}', "NUL"),
    ('{"kind": "train", "payload": {"$where": 1}}', "'$'"),
    ('{"kind": "train", "payload": {"text": "\\ud800"}}', "UTF-8"),
    ('{"kind": "train", "timeout": NaN}', ""),
    ('{"kind": "train", "timeout": Infinity}', ""),
    ('{"kind": "train", "payload": {"x": NaN}}', "finite"),
])
async def test_unstorable_job_bodies_get_422(raw, body, where):
    detail = assert_schema_422(await raw.post("/jobs", content=body, headers=AUTH))
    assert where in json.dumps(detail), detail


async def test_unstorable_values_in_paths_queries_and_free_form_bodies_get_422(raw):
    big = "9223372036854775808"
    for path in (f"/experiments/{big}", f"/experiments?skip={big}", f"/experiments?parent={big}",
                 f"/experiments/{big}/lineage", f"/jobs?experiment={big}"):
        assert_schema_422(await raw.get(path, headers=AUTH))
    created = await raw.post("/experiments", headers=AUTH, json={"name": "x", "program": "class DeltaNet: pass"})
    assert created.status_code == 201
    patched = await raw.patch("/experiments/1", headers=AUTH,
                              content='{"train": {"val_loss": 1.0, "curve": [1e400]}}')
    assert_schema_422(patched)
    stored = await raw.put("/calibrations/synthetic", headers=AUTH, content='{"programs": {"a\\u0000": {}}}')
    assert_schema_422(stored)


async def test_a_string_detail_422_keeps_the_declared_shape(raw):
    response = await raw.post("/experiments", headers=AUTH,
                              json={"name": "orphan", "program": "class DeltaNet: pass", "parent": 77})
    detail = assert_schema_422(response)
    assert "77" in detail[0]["msg"]


async def test_an_expired_lease_cannot_complete_before_or_after_the_reaper(api_client, store):
    job = await api_client.create_job(kind="train", payload={"fidelity": "smoke"}, timeout=30)
    leased = await store.lease_job(kinds=["train"], worker="late", now=time.time(), lease_s=30)
    assert leased["id"] == job["id"]
    # Before the reaper: the lease ran out a second ago.
    with pytest.raises(Conflict, match="expired"):
        await store.complete_job(job_id=job["id"], worker="late", result={}, next_jobs=[],
                                 now=leased["lease_expires_at"] + 1)
    # After the reaper: the job is queued again, and the late worker is refused with 409 through the API.
    await store.reap_expired(now=leased["lease_expires_at"] + 1)
    from database.client import ApiError

    with pytest.raises(ApiError) as err:
        await api_client.complete_job(job["id"], "late", {"ok": True}, [])
    assert err.value.status == 409
    assert (await api_client.get_job(job["id"]))["status"] == "queued"


async def test_calibrations_are_stored_by_rung_and_read_without_a_token(raw, api_client):
    record = {"fidelity": "synthetic", "seeds": 3, "spearman_expected": 0.9, "programs": {"deltanet": {}}}
    assert (await api_client.put_calibration(record))["stored"] is True
    listed = (await raw.get("/calibrations")).json()
    assert listed["synthetic"]["spearman_expected"] == 0.9 and "_id" not in listed["synthetic"]
    mismatch = await raw.put("/calibrations/smoke", headers=AUTH, json=record)
    assert "calibration of 'synthetic'" in assert_schema_422(mismatch)[0]["msg"]
