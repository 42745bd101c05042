"""The candidate API: `create_app()` builds it; `python -m database` serves it (OpenAPI at /docs, served
offline; the dashboard at /ui).

With no MONGODB_URL the app starts an embedded MongoDB-wire server on `RUN_DIR/db.sqlite` and stops
it on shutdown. A background reaper re-queues jobs whose leases expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from database import dashboard, docs
from database.bson_safe import install_handlers
from database.embedded import EmbeddedMongo
from database.routes import calibrations, candidates, experiments, jobs, search, steering, system
from database.settings import Settings
from database.store import Store

log = logging.getLogger("database")


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, counting what is actually sent.

    The body is read up front (at most `max_bytes` of it) and replayed to the app, so a chunked
    upload without a declared length is held to the same limit.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, send)
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                return await self._refuse(scope, send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, send):
        response = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413)
        await response(scope, None, send)


async def reap_forever(store: Store, interval_s: float) -> None:
    while True:
        try:
            for job in await store.reap_expired(now=time.time()):
                log.info("lease expired: job %s is %s (%s)", job["id"], job["status"], job["error"])
        except Exception:
            log.exception("reaper pass failed; retrying")
        await asyncio.sleep(interval_s)


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedded = None
        own_store = store
        if own_store is None:
            url = settings.mongodb_url
            if not url:
                embedded = EmbeddedMongo(settings.run_dir / "db.sqlite").start()
                url = embedded.url
                log.info("embedded database on %s (%s)", url, settings.run_dir / "db.sqlite")
            own_store = Store.connect(url, settings.mongodb_db)
        await own_store.init()
        app.state.store = own_store
        reaper = asyncio.create_task(reap_forever(own_store, settings.reaper_interval_s))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            if store is None:
                await own_store.close()
            if embedded is not None:
                embedded.stop()

    app = FastAPI(
        title="Architecture discovery candidate API",
        description="Experiments, candidate pool, lineage, job queue with leases, cognition and search.",
        version="0.1.0",
        lifespan=lifespan,
        # Replaced by docs.install: the defaults load their assets from a CDN and are blank offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    for module in (system, experiments, candidates, jobs, search, calibrations, steering):
        app.include_router(module.router)
    docs.install(app)
    dashboard.install(app)
    install_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
