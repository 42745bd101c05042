"""Experiments, genealogy, scoring and the pool through the HTTP API."""

import httpx
import pytest

from database.client import ApiClient, ApiError

PROGRAM = "import torch\nclass DeltaNet(torch.nn.Module):\n    pass\n"


async def make(client, name, parent=None, **kw):
    return await client.create_experiment(name=name, program=PROGRAM, motivation=kw.pop("motivation", name),
                                          parent=parent, **kw)


async def finish(client, index, val_loss, average, recall=0.5, judge=None):
    await client.update_experiment(index, status="evaluated", train={"loss_curve": [[0, 5.0], [10, val_loss]],
                                   "val_loss": val_loss}, eval={"average": average, "recall": recall})
    return await client.score_experiment(index, judge_score=judge)


async def test_indexes_are_sequential_and_names_unique(api_client):
    first = await make(api_client, "seed", origin="seed", is_baseline=True)
    second = await make(api_client, "child", parent=first["index"])
    assert (first["index"], second["index"]) == (1, 2)
    assert second["status"] == "proposed" and second["costs"] == {"llm_tokens": 0, "gpu_seconds": 0, "cpu_seconds": 0}
    with pytest.raises(ApiError) as err:
        await make(api_client, "child")
    assert err.value.status == 409


async def test_concurrent_creates_get_distinct_indexes(api_client):
    import asyncio

    made = await asyncio.gather(*(make(api_client, f"c{i}") for i in range(20)))
    assert sorted(e["index"] for e in made) == list(range(1, 21))


async def test_source_job_makes_creation_idempotent(api_client):
    a = await make(api_client, "x1", source_job="job-1")
    b = await make(api_client, "x1-retry", source_job="job-1")
    assert a["index"] == b["index"]


async def test_get_list_patch_and_costs_add_up(api_client):
    seed = await make(api_client, "seed", is_baseline=True)
    for i in range(3):
        await make(api_client, f"kid{i}", parent=seed["index"])
    page = await api_client.list_experiments(parent=seed["index"], limit=2)
    assert page["count"] == 3 and len(page["data"]) == 2
    assert (await api_client.list_experiments(status="proposed", skip=3))["data"][0]["name"] == "kid2"
    await api_client.update_experiment(2, costs={"llm_tokens": 100, "gpu_seconds": 1.5})
    updated = await api_client.update_experiment(2, costs={"llm_tokens": 20}, check={"passed": True})
    assert updated["costs"]["llm_tokens"] == 120 and updated["costs"]["gpu_seconds"] == 1.5
    assert updated["check"] == {"passed": True}
    stats = await api_client.stats()
    assert stats["costs"]["llm_tokens"] == 120 and stats["by_status"]["proposed"] == 4


async def test_unknown_ids_are_404(api_client):
    for call in (api_client.get_experiment(99), api_client.lineage(99), api_client.children(99),
                 api_client.context(99), api_client.update_experiment(99, status="failed"),
                 api_client.score_experiment(99), api_client.get_job("nope")):
        with pytest.raises(ApiError) as err:
            await call
        assert err.value.status == 404


async def test_lineage_children_context_tree(api_client):
    root = await make(api_client, "root", is_baseline=True)
    a = await make(api_client, "a", parent=root["index"])
    b = await make(api_client, "b", parent=a["index"])
    c = await make(api_client, "c", parent=a["index"])
    d = await make(api_client, "d", parent=a["index"])
    await finish(api_client, root["index"], 3.0, 0.4)
    await finish(api_client, c["index"], 2.9, 0.41)
    await finish(api_client, d["index"], 3.1, 0.39)
    assert [e["name"] for e in await api_client.lineage(b["index"])] == ["b", "a", "root"]
    assert [e["name"] for e in await api_client.children(a["index"])] == ["b", "c", "d"]
    ctx = await api_client.context(b["index"])
    assert ctx["parent"]["name"] == "a" and ctx["grandparent"]["name"] == "root"
    assert [s["name"] for s in ctx["siblings"]] == ["c", "d"]
    tree = await api_client.tree()
    assert {(n["index"], n["parent"]) for n in tree} == {(1, None), (2, 1), (3, 2), (4, 2), (5, 2)}
    assert "program" not in tree[0]


async def test_scoring_against_baseline_updates_pool(api_client):
    with pytest.raises(ApiError) as err:
        await api_client.score_experiment((await make(api_client, "early"))["index"])
    assert err.value.status == 409 and "baseline" in str(err.value.detail)
    seed = await make(api_client, "seed", is_baseline=True, origin="seed")
    base = await finish(api_client, seed["index"], 3.0, 0.40)
    assert base["fitness"] == pytest.approx(0.5) and base["status"] == "analysed"
    good = await finish(api_client, (await make(api_client, "good", parent=1))["index"], 2.85, 0.42, recall=0.6)
    bad = await finish(api_client, (await make(api_client, "bad", parent=1))["index"], 3.2, 0.38, recall=0.4)
    assert good["fitness"] > 0.5 > bad["fitness"]
    assert good["fitness_parts"]["baseline"] == seed["index"]
    nan = await make(api_client, "nan", parent=1)
    await api_client.update_experiment(nan["index"], train={"loss_curve": [], "val_loss": None},
                                       eval={"average": 0.9, "recall": 0.9})
    scored = await api_client.score_experiment(nan["index"], judge_score=1.0)
    assert scored["fitness"] is None and scored["status"] == "failed"
    pool = await api_client.candidates(k=50)
    assert [e["name"] for e in pool] == ["good", "seed", "bad"]
    assert [e["name"] for e in await api_client.candidates(k=1)] == ["good"]
    assert (await api_client.rebuild_candidates())["pool_size"] == 3
    sample = await api_client.sample(seed=3)
    assert sample["parent"]["name"] in {"good", "seed", "bad"}
    uct = await api_client.request("GET", "/candidates/sample", params={"strategy": "uct", "c": 0})
    assert uct["parent"]["name"] == "good"
    assert (await api_client.baseline("smoke"))["index"] == seed["index"]
    assert await api_client.baseline("verify") is None
    assert (await api_client.stats())["pool_size"] == 3


async def test_sample_from_empty_pool_is_404(api_client):
    with pytest.raises(ApiError) as err:
        await api_client.sample()
    assert err.value.status == 404


async def test_writes_need_the_token_reads_do_not(api_app):
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as raw:
        body = {"name": "x", "program": PROGRAM}
        assert (await raw.post("/experiments", json=body)).status_code == 401
        wrong = await raw.post("/experiments", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        for path in ("/jobs", "/jobs/lease", "/cognition", "/candidates/rebuild"):
            assert (await raw.post(path, json={})).status_code == 401
        assert (await raw.patch("/experiments/1", json={})).status_code == 401
        assert (await raw.get("/experiments")).status_code == 200
        assert (await raw.get("/health")).json()["database"] == "reachable"


async def test_reads_can_be_protected(api_settings):
    from database.app import create_app

    app = create_app(api_settings.model_copy(update={"protect_reads": True}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as raw:
            assert (await raw.get("/experiments")).status_code == 401
            assert (await raw.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"program": PROGRAM}, "name"),
        ({"name": "bad name!", "program": PROGRAM}, "name"),
        ({"name": "x", "program": ""}, "program"),
        ({"name": "x", "program": PROGRAM, "parent": "one"}, "parent"),
        ({"name": "x", "program": PROGRAM, "fidelity": "huge"}, "fidelity"),
        ({"name": "x", "program": PROGRAM, "references": "1,2"}, "references"),
        ({"name": "x", "program": PROGRAM, "surprise": 1}, "surprise"),
    ],
)
async def test_malformed_experiments_get_422_naming_the_field(api_client, body, field):
    response = await api_client.http.post("/experiments", json=body)
    assert response.status_code == 422
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"])


async def test_broken_json_wrong_types_and_unknown_parent(api_client):
    broken = await api_client.http.post("/experiments", content=b"{not json",
                                        headers={"Content-Type": "application/json"})
    assert broken.status_code == 422
    assert (await api_client.http.patch("/experiments/1", json={"status": "great"})).status_code == 422
    assert (await api_client.http.get("/experiments/abc")).status_code == 422
    assert (await api_client.http.get("/experiments", params={"limit": 0})).status_code == 422
    orphan = await api_client.http.post("/experiments", json={"name": "o", "program": PROGRAM, "parent": 42})
    assert orphan.status_code == 422 and "42" in orphan.text
    bad_job = await api_client.http.post("/jobs", json={"kind": "paint"})
    assert bad_job.status_code == 422 and "kind" in bad_job.text
    assert (await api_client.http.post("/experiments/1/score", json={"judge_score": 3})).status_code == 422


async def test_huge_payloads_are_refused_with_413(api_client):
    huge = {"name": "big", "program": "x" * 3_000_000}
    response = await api_client.http.post("/experiments", json=huge)
    assert response.status_code == 413
    # Without a declared length (chunked), the limit still holds.
    async def chunks():
        for _ in range(30):
            yield b"x" * 100_000
    chunked = await api_client.http.post("/experiments", content=chunks(),
                                         headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert (await api_client.list_experiments())["count"] == 0


async def test_client_retries_server_errors_then_gives_up():
    calls = []

    def handler(request):
        calls.append(request.url.path)
        return httpx.Response(503 if len(calls) < 3 else 200, json={"status": "ok"})

    client = ApiClient("http://api", transport=httpx.MockTransport(handler), retries=4, backoff_s=0.001)
    assert (await client.health())["status"] == "ok" and len(calls) == 3
    failing = ApiClient("http://api", transport=httpx.MockTransport(lambda r: httpx.Response(500, json={})),
                        retries=2, backoff_s=0.001)
    with pytest.raises(ApiError) as err:
        await failing.health()
    assert err.value.status == 500
    unreachable = ApiClient("http://127.0.0.1:9", retries=1, backoff_s=0.001)
    with pytest.raises(ApiError, match="cannot reach"):
        await unreachable.health()
