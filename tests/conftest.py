"""Shared fixtures: a real MongoDB-wire server and the candidate API bound to it.

The store and API run against a real `nx-27017` server on a free loopback port, or against real
MongoDB when MONGODB_TEST_URL is set. Each test gets a database of its own.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from database.app import create_app
from database.client import ApiClient
from database.embedded import EmbeddedMongo
from database.settings import Settings
from database.store import Store

TEST_TOKEN = "test-token"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory) -> str:
    if os.environ.get("MONGODB_TEST_URL"):
        yield os.environ["MONGODB_TEST_URL"]
        return
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo") / "test.sqlite").start()
    yield server.url
    server.stop()


@pytest.fixture
def db_name() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def api_settings(mongo_url, db_name, tmp_path) -> Settings:
    return Settings(mongodb_url=mongo_url, mongodb_db=db_name, run_dir=tmp_path / "run", api_token=TEST_TOKEN,
                    reaper_interval_s=0.2, embedding_backend="tfidf", _env_file=None)


@pytest.fixture
async def store(mongo_url, db_name):
    store = Store.connect(mongo_url, db_name)
    await store.init()
    yield store
    await store.client.drop_database(db_name)
    await store.close()


@pytest.fixture
async def api_app(api_settings):
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        yield app
        await app.state.store.client.drop_database(api_settings.mongodb_db)


@pytest.fixture
async def api_client(api_app):
    """An ApiClient bound in-process to a fresh API on a real MongoDB-wire server."""
    client = ApiClient("http://api", token=TEST_TOKEN, transport=httpx.ASGITransport(app=api_app), retries=1)
    yield client
    await client.aclose()


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "asi-arch").is_dir():
        pytest.skip(f"the published ASI-Arch data is not beside the repository ({SHARED / 'asi-arch'})")
    return SHARED
