"""Every route of the API, walked from its OpenAPI schema: a new endpoint cannot go untested here.

Writes refuse a missing token (401) and broken JSON (422); routes that name an experiment or a job
answer 404 for one that does not exist, never 500.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TEST_TOKEN

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
# A valid body for each write route that names a resource, so that only the unknown id is wrong.
VALID_BODIES = {
    "/experiments/{index}": {},
    "/experiments/{index}/score": {},
    "/experiments/{index}/veto": {"reason": "r"},
    "/jobs/{job_id}/heartbeat": {"worker": "w"},
    "/jobs/{job_id}/complete": {"worker": "w"},
    "/jobs/{job_id}/fail": {"worker": "w", "reason": "r"},
    "/calibrations/{fidelity}": {"programs": {}},
}
UNKNOWN = {"index": "999999", "job_id": "no-such-job", "fidelity": "no-such-rung"}


def routes(app) -> list[tuple[str, str, bool]]:
    """(method, path, takes a JSON body) of every operation the API publishes."""
    found = [(method.upper(), path, "requestBody" in operation)
             for path, operations in app.openapi()["paths"].items() for method, operation in operations.items()]
    assert len(found) >= 20, found
    return found


def concrete(path: str) -> str:
    for name, value in UNKNOWN.items():
        path = path.replace(f"{{{name}}}", value)
    assert "{" not in path, f"no test value for a parameter of {path}: add it to UNKNOWN"
    return path


@pytest.fixture
async def raw(api_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api_app), base_url="http://api") as client:
        yield client


async def test_every_write_needs_the_token_and_refuses_broken_json(api_app, raw):
    writes = [(m, p, r) for m, p, r in routes(api_app) if m in WRITE_METHODS]
    for method, path, has_body in writes:
        url = concrete(path)
        assert (await raw.request(method, url, json={})).status_code == 401, f"{method} {path}"
        if has_body:
            broken = await raw.request(method, url, content=b"{not json", headers={**AUTH,
                                       "Content-Type": "application/json"})
            assert broken.status_code == 422, f"{method} {path}: {broken.status_code} {broken.text[:200]}"


async def test_every_route_naming_a_resource_answers_404_for_an_unknown_one(api_app, raw):
    named = [(m, p) for m, p, _ in routes(api_app) if "{" in p]
    assert named, "no route takes an id"
    for method, path in named:
        if method in WRITE_METHODS:
            assert path in VALID_BODIES, f"add a valid body for {method} {path} to VALID_BODIES"
            response = await raw.request(method, concrete(path), json=VALID_BODIES[path], headers=AUTH)
        else:
            response = await raw.request(method, concrete(path), headers=AUTH)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text[:200]}"
        assert response.json()["detail"], f"{method} {path}: a 404 without a reason"
