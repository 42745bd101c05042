"""The job queue's contract: atomic leases, heartbeats, idempotent completion, retries, the reaper."""

import asyncio

import pytest

from database.client import ApiError, LeaseLost
from database.worker import CandidateError, Outcome, serve


async def wait_for(predicate, timeout_s=10.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_lease_is_fifo_by_kind_and_empty_queue_is_204(api_client):
    a = await api_client.create_job(kind="train")
    b = await api_client.create_job(kind="evaluate")
    c = await api_client.create_job(kind="train")
    assert (await api_client.lease_job(["train"], "w"))["id"] == a["id"]
    assert (await api_client.lease_job(["evaluate", "train"], "w"))["id"] == b["id"]
    assert (await api_client.lease_job(["train"], "w"))["id"] == c["id"]
    assert await api_client.lease_job(["train", "analyse"], "w") is None
    response = await api_client.http.post("/jobs/lease", json={"kinds": ["train"], "worker": "w"})
    assert response.status_code == 204


async def test_concurrent_leases_never_share_a_job(api_client):
    for _ in range(20):
        await api_client.create_job(kind="train")
    leased = await asyncio.gather(*(api_client.lease_job(["train"], f"w{i}") for i in range(50)))
    ids = [job["id"] for job in leased if job]
    assert len(ids) == 20 == len(set(ids))


async def test_heartbeat_complete_idempotent_and_stale_worker_409(api_client):
    job = await api_client.create_job(kind="train", timeout=30)
    leased = await api_client.lease_job(["train"], "w1")
    before = leased["lease_expires_at"]
    await asyncio.sleep(0.05)
    assert (await api_client.heartbeat(job["id"], "w1"))["lease_expires_at"] > before
    with pytest.raises(LeaseLost):
        await api_client.heartbeat(job["id"], "intruder")
    with pytest.raises(LeaseLost):
        await api_client.complete_job(job["id"], "intruder", {"x": 1})
    first = await api_client.complete_job(job["id"], "w1", {"x": 1}, [{"kind": "evaluate"}])
    again = await api_client.complete_job(job["id"], "w1", {"x": 1}, [{"kind": "evaluate"}])
    assert first["status"] == again["status"] == "succeeded"
    assert (await api_client.list_jobs(kind="evaluate"))["count"] == 1
    with pytest.raises(LeaseLost):
        await api_client.heartbeat(job["id"], "w1")


async def test_follow_up_jobs_keep_the_chains_lease_and_attempts_unless_they_name_their_own(api_client):
    job = await api_client.create_job(kind="engineer", timeout=7, max_attempts=5)
    leased = await api_client.lease_job(["engineer"], "w")
    # The lease is the job's own length, not the server's default.
    assert leased["lease_expires_at"] - leased["updated_at"] == pytest.approx(7, abs=0.5)
    await api_client.complete_job(job["id"], "w", {}, [{"kind": "train"}, {"kind": "evaluate", "timeout": 9}])
    train = (await api_client.list_jobs(kind="train"))["data"][0]
    evaluate = (await api_client.list_jobs(kind="evaluate"))["data"][0]
    assert (train["timeout"], train["max_attempts"], train["root"]) == (7, 5, job["id"])
    assert (evaluate["timeout"], evaluate["max_attempts"]) == (9, 5)
    leased = await api_client.lease_job(["train"], "w")
    assert leased["lease_expires_at"] - leased["updated_at"] == pytest.approx(7, abs=0.5)


async def test_fail_requeues_until_attempts_are_spent_then_fails_experiment(api_client):
    exp = await api_client.create_experiment(name="e", program="p")
    job = await api_client.create_job(kind="train", experiment=exp["index"], max_attempts=2)
    await api_client.lease_job(["train"], "w1")
    requeued = await api_client.fail_job(job["id"], "w1", "gpu fell over")
    assert requeued["status"] == "queued" and requeued["attempts"] == 1
    again = await api_client.fail_job(job["id"], "w1", "gpu fell over")
    assert again["status"] == "queued"
    await api_client.lease_job(["train"], "w2")
    final = await api_client.fail_job(job["id"], "w2", "gpu fell over again")
    assert final["status"] == "failed" and [e["reason"] for e in final["errors"]] == ["gpu fell over",
                                                                                     "gpu fell over again"]
    failed = await api_client.get_experiment(exp["index"])
    assert failed["status"] == "failed" and failed["failure"] == {"stage": "train", "reason": "gpu fell over again"}


async def test_fail_without_retry_is_final(api_client):
    job = await api_client.create_job(kind="engineer", max_attempts=5)
    await api_client.lease_job(["engineer"], "w")
    assert (await api_client.fail_job(job["id"], "w", "not causal", retry=False))["status"] == "failed"


async def test_reaper_requeues_expired_leases_and_fails_when_spent(api_client):
    job = await api_client.create_job(kind="train", timeout=0.3, max_attempts=2)
    await api_client.lease_job(["train"], "dead-worker")

    async def requeued():
        return (await api_client.get_job(job["id"]))["status"] == "queued"

    await wait_for(requeued)
    with pytest.raises(LeaseLost):
        await api_client.heartbeat(job["id"], "dead-worker")
    await api_client.lease_job(["train"], "second")

    async def failed():
        return (await api_client.get_job(job["id"]))["status"] == "failed"

    await wait_for(failed)
    assert "lease expired" in (await api_client.get_job(job["id"]))["error"]


async def test_serve_chains_stages_and_sorts_failures(api_client):
    exp = await api_client.create_experiment(name="e", program="p")
    await api_client.create_job(kind="train", experiment=exp["index"], payload={"fidelity": "smoke"})
    seen = []

    async def handle(job, client):
        seen.append((job["kind"], job["payload"]))
        if job["kind"] == "evaluate":
            return Outcome({"score": 1}, next_jobs=[])
        return {"done": job["kind"]}

    assert await serve(api_client, ["train", "evaluate"], handle, idle_timeout_s=0.1, poll_interval_s=0.05) == 2
    assert seen == [("train", {"fidelity": "smoke"}), ("evaluate", {"fidelity": "smoke"})]
    assert (await api_client.list_jobs(kind="analyse"))["count"] == 0

    bad = await api_client.create_job(kind="engineer", experiment=exp["index"], max_attempts=3)
    flaky = await api_client.create_job(kind="analyse", max_attempts=2)

    async def explode(job, client):
        if job["kind"] == "engineer":
            raise CandidateError("forward pass is not causal")
        raise RuntimeError("disk full")

    await serve(api_client, ["engineer", "analyse"], explode, idle_timeout_s=0.1, poll_interval_s=0.05)
    bad_job = await api_client.get_job(bad["id"])
    assert bad_job["status"] == "failed" and bad_job["attempts"] == 1 and "not causal" in bad_job["error"]
    flaky_job = await api_client.get_job(flaky["id"])
    assert flaky_job["status"] == "failed" and flaky_job["attempts"] == 2 and "disk full" in flaky_job["error"]
    assert (await api_client.get_experiment(exp["index"]))["failure"]["stage"] == "engineer"


async def test_lost_lease_cancels_the_handler(api_client):
    job = await api_client.create_job(kind="train", timeout=0.3)
    cancelled = asyncio.Event()

    async def slow(job, client):
        # Another worker steals the job once the reaper re-queues it.
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    async def steal():
        async def queued():
            # Re-queued after the worker's lease expired, not merely not yet leased.
            current = await api_client.get_job(job["id"])
            return current["status"] == "queued" and current["attempts"] == 1
        await wait_for(queued)
        return await api_client.lease_job(["train"], "thief")

    thief = asyncio.create_task(steal())
    # A heartbeat slower than the lease lets it expire.
    await serve(api_client, ["train"], slow, once=True, heartbeat_s=1.0)
    stolen = await thief
    assert cancelled.is_set()
    assert stolen["id"] == job["id"] and stolen["attempts"] == 2


async def test_job_for_unknown_experiment_is_422(api_client):
    with pytest.raises(ApiError) as err:
        await api_client.create_job(kind="train", experiment=7)
    assert err.value.status == 422


async def test_a_job_payload_with_an_unknown_fidelity_or_bad_overrides_is_refused(api_client):
    from database.client import ApiError

    for payload, message in (({"fidelity": "nonsense"}, "unknown fidelity 'nonsense'"),
                             ({"fidelity": "smoke", "overrides": {"steps": -5}}, "must be positive"),
                             ({"fidelity": "synthetic", "seeds": [0, "x"]}, "payload.seeds")):
        try:
            await api_client.create_job(kind="train", payload=payload)
        except ApiError as err:
            assert err.status == 422 and message in str(err.detail), err.detail
        else:
            raise AssertionError(f"{payload} was accepted")
    job = await api_client.create_job(kind="train", payload={"fidelity": "synthetic", "seeds": [3, 4]})
    assert job["payload"]["seeds"] == [3, 4]
