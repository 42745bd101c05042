"""`/docs` and `/redoc` that work offline.

FastAPI's defaults load Swagger UI and ReDoc from a CDN, so the pages are blank on a machine without the
internet. The `fastapi-offline` package ships both bundles; they are served in place from its installed
folder. Without that package, `/docs` falls back to a plain list of the operations, built from the schema.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"


def bundled_assets() -> Path | None:
    """The folder of the installed Swagger UI and ReDoc bundles, or None when they are not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
    return folder if all((folder / name).is_file() for name in needed) else None


def operations_page(app: FastAPI) -> HTMLResponse:
    """Every operation with its summary: less than Swagger UI, but readable with nothing else installed."""
    rows = []
    for path, methods in app.openapi().get("paths", {}).items():
        for method, operation in methods.items():
            summary = operation.get("summary") or ""
            rows.append(f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}"
                        f"</code></td><td>{html.escape(summary)}</td></tr>")
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(app.title)}</title></head>"
            f"<body><h1>{html.escape(app.title)}</h1><p>The schema is at <a href='{app.openapi_url}'>"
            f"{app.openapi_url}</a>.</p><table>{''.join(rows)}</table></body></html>")
    return HTMLResponse(body)


def install(app: FastAPI) -> None:
    """Add /docs and /redoc to an app created with `docs_url=None, redoc_url=None`."""
    assets = bundled_assets()
    title = f"{app.title} - documentation"
    if assets is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        if assets is None:
            return operations_page(app)
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=title, swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        if assets is None:
            return operations_page(app)
        return get_redoc_html(openapi_url=app.openapi_url, title=title, redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
