"""The researcher's dashboard at `/ui`: one page of hand-written HTML, CSS and JavaScript.

Every asset ships in `database/static/ui/` and is served by the API's own process, so the dashboard works
offline and needs no build step. The page reads the same public endpoints as any client (no token for
reads unless PROTECT_READS is set) and polls them to stay live; steering actions send the token the user
typed into the page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static" / "ui"

router = APIRouter(include_in_schema=False)


@router.get("/ui")
@router.get("/ui/")
async def dashboard() -> FileResponse:
    # no-cache: after an upgrade the browser must not keep an index that names scripts that changed.
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui")


class RevalidatedFiles(StaticFiles):
    """Static files the browser revalidates each load, so a changed script is never served stale."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", RevalidatedFiles(directory=STATIC), name="ui-static")
