"""Similarity search over motivations and the cognition base."""

import json
import os

import pytest

from database.similarity import Similarity, tfidf_scores


def test_tfidf_ranks_the_paraphrase_first():
    docs = ["Add a forget gate to the delta rule so old associations decay",
            "Replace the short convolution with a longer causal FIR filter",
            "Use multi-scale rotary embeddings in attention"]
    scores = tfidf_scores("a decaying forget gate on the delta rule memory", docs)
    assert max(range(3), key=scores.__getitem__) == 0 and scores[2] == 0.0


def test_unknown_backend_and_missing_url_are_clear_errors():
    with pytest.raises(ValueError, match="tfidf"):
        Similarity("word2vec")
    with pytest.raises(ValueError, match="EMBEDDING_URL"):
        Similarity("openai")


async def test_similar_motivations_through_the_api(api_client):
    motivations = ["gated delta rule with a learned forget gate", "sliding window local attention fused in",
                   "larger short convolution kernels on q and k"]
    for i, text in enumerate(motivations):
        await api_client.create_experiment(name=f"m{i}", program="p", motivation=text)
    hits = await api_client.similar("add a forget gate to the delta rule", k=2)
    assert [h["name"] for h in hits][0] == "m0" and len(hits) == 2
    assert hits[0]["score"] > hits[1]["score"]
    assert [h["name"] for h in await api_client.similar("forget gate delta", k=5, exclude=1)][0] != "m0"
    bad = await api_client.http.get("/search/similar", params={"text": "", "k": 5})
    assert bad.status_code == 422


async def test_cognition_add_is_idempotent_and_searchable(api_client):
    ours = [{"title": "DeltaNet", "source": "our notes", "text": "The delta rule updates a fast-weight memory by "
             "error correction: S <- S + beta (v - S k) k^T, trained in parallel with a chunkwise WY form."},
            {"title": "Mamba2", "text": "State space duality: a scalar-decay selective SSM equals masked linear attention."}]
    first = await api_client.add_cognition(ours)
    again = await api_client.add_cognition(ours)
    assert (first["added"], again["added"], again["skipped"]) == (2, 0, 2)
    hits = await api_client.search_cognition("error-correcting delta rule memory update", k=1)
    assert hits[0]["title"] == "DeltaNet" and hits[0]["score"] > 0


async def test_published_cognition_format_imports(api_client, shared_dir):
    published = json.loads((shared_dir / "asi-arch" / "cognition.json").read_text())
    entries = [{**entry, "source": name} for name, items in list(published.items())[:5] for entry in items]
    result = await api_client.add_cognition(entries)
    assert result["added"] == len(entries)
    hits = await api_client.search_cognition("multi-head self-attention long-range dependencies", k=3)
    assert len(hits) == 3 and all("DESIGN_INSIGHT" in h for h in hits)


async def test_empty_cognition_body_is_422(api_client):
    response = await api_client.http.post("/cognition", json={"entries": []})
    assert response.status_code == 422 and "entries" in response.text


@pytest.mark.skipif(not os.environ.get("MONGODB_TEST_URL"), reason="set MONGODB_TEST_URL to test against real MongoDB")
async def test_real_mongodb_lease_is_atomic(store):
    import asyncio
    import time

    for _ in range(10):
        await store.create_job(job={"kind": "train"})
    leased = await asyncio.gather(*(store.lease_job(kinds=["train"], worker=f"w{i}", now=time.time(), lease_s=60)
                                    for i in range(30)))
    ids = [j["id"] for j in leased if j]
    assert len(ids) == 10 == len(set(ids))
