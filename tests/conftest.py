"""Shared fixtures: a real MongoDB-wire server and the candidate API bound to it.

The store and API run against a real `nx-27017` server on a free loopback port, or against real
MongoDB when MONGODB_TEST_URL is set. Each test gets a database of its own.
"""

from __future__ import annotations

import os
import tempfile
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
# Workers read data only under their data roots (trainer.job_limits); test corpora live in pytest's
# temporary directories, and workers started as subprocesses inherit this.
os.environ.setdefault("DATA_ROOTS", tempfile.gettempdir())
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


class ApiProcess:
    """`python -m database` as a real server process on a loopback port (the embedded database inside)."""

    def __init__(self, run_dir: Path, port: int, extra_env: dict | None = None):
        self.run_dir, self.port, self.extra_env = run_dir, port, extra_env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.token = TEST_TOKEN
        self.process = None

    def start(self, timeout_s: float = 30.0) -> ApiProcess:
        import subprocess
        import sys
        import time

        env = {**os.environ, "RUN_DIR": str(self.run_dir), "API_TOKEN": TEST_TOKEN, "MONGODB_URL": "",
               "REAPER_INTERVAL_S": "0.2", "EMBEDDING_BACKEND": "tfidf", **self.extra_env}
        self.log = open(self.run_dir / f"api-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "database", "--port", str(self.port)], env=env,
            stdout=self.log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API exited early: {(self.run_dir / f'api-{self.port}.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"API did not answer on {self.url} within {timeout_s}s")

    def kill(self) -> None:
        """SIGKILL the whole process group (the API and its embedded database), as a crash would."""
        import signal

        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        import signal

        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.kill()


@pytest.fixture
def start_api(tmp_path):
    """Factory: `api = start_api()` runs a real API server; all are stopped after the test."""
    from database.embedded import free_port

    started: list[ApiProcess] = []

    def start(run_dir: Path | None = None, port: int | None = None, **extra_env) -> ApiProcess:
        run_dir = run_dir or tmp_path / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        api = ApiProcess(run_dir, port or free_port(), {k.upper(): str(v) for k, v in extra_env.items()}).start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()
