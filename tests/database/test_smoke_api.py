async def test_basic_flow(api_client):
    h = await api_client.health()
    assert h["status"] == "ok"
    e = await api_client.create_experiment(name="seed", program="x=1", origin="seed", is_baseline=True)
    assert e["index"] == 1
    j = await api_client.create_job(kind="train", experiment=1)
    leased = await api_client.lease_job(["train"], "w1")
    assert leased["id"] == j["id"]
    await api_client.heartbeat(j["id"], "w1")
    done = await api_client.complete_job(j["id"], "w1", {"ok": 1}, [{"kind": "evaluate", "experiment": 1}])
    assert done["status"] == "succeeded"
    nxt = await api_client.lease_job(["evaluate"], "w2")
    assert nxt["id"] == j["id"] + ".0"
