"""What MongoDB can store, checked before anything reaches it, and errors in the schema's own shape.

A request is refused with 422 when it holds an integer outside int64, a float that is NaN or
infinite, a key with a NUL byte or a leading `$`, a string that is not valid UTF-8 (a lone
surrogate), or nesting deeper than MAX_DEPTH. Whatever slips through (a path or query integer
past int64) meets the handlers below, which answer 422 instead of 500. Every 422 body has the shape
the OpenAPI schema declares, `{"detail": [{"loc", "msg", "type"}]}`, and echoes no input that JSON
cannot carry.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bson.errors import InvalidDocument, InvalidStringData
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

INT64 = (-(2**63), 2**63 - 1)
MAX_DEPTH = 32


def problems(value: Any, where: tuple = (), depth: int = 0) -> list[str]:
    """Every reason `value` cannot be stored as BSON, each naming where it is."""
    place = ".".join(map(str, where)) or "body"
    if depth > MAX_DEPTH:
        return [f"{place}: nested deeper than {MAX_DEPTH} levels"]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [] if INT64[0] <= value <= INT64[1] else [f"{place}: integer {value} is outside int64"]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{place}: {value} is not a finite number"]
    if isinstance(value, str):
        return [] if _utf8(value) else [f"{place}: text that is not valid UTF-8 (a lone surrogate?)"]
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if not isinstance(key, str) or not _utf8(key) or "\x00" in key or key.startswith("$"):
                found.append(f"{place}: key {ascii(key)} has a NUL byte, a leading '$' or invalid UTF-8")
                continue
            found += problems(item, (*where, key), depth + 1)
        return found
    if isinstance(value, (list, tuple)):
        return [p for i, item in enumerate(value) for p in problems(item, (*where, i), depth + 1)]
    return []


def check(value: Any) -> Any:
    """`value` unchanged, or ValueError naming what cannot be stored (pydantic turns it into a 422)."""
    found = problems(value)
    if found:
        raise ValueError("; ".join(found[:5]))
    return value


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(value: Any) -> Any:
    """An echo of the input that JSON can carry: bytes as text, anything doubtful as its ascii() text."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:2000]).decode("utf-8", errors="replace")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return ascii(value)[:200]
    return value if not problems(value) else ascii(value)[:200]


def _error(loc: list, msg: str, kind: str = "value_error", **extra) -> dict:
    return {"loc": loc, "msg": msg, "type": kind, **extra}


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for error in exc.errors():
            item = _error([str(part) if not isinstance(part, int) else part for part in error.get("loc", ())],
                          str(error.get("msg", "invalid")), str(error.get("type", "value_error")))
            if "input" in error:
                item["input"] = _printable(error["input"])
            details.append(item)
        return JSONResponse(status_code=422, content={"detail": details})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 422 and not isinstance(detail, list):
            detail = [_error(["body"], str(detail))]
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    @app.exception_handler(OverflowError)
    async def too_large(request: Request, exc: OverflowError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [_error(["query"], f"a number out of range: {exc}")]})

    @app.exception_handler(InvalidDocument)
    @app.exception_handler(InvalidStringData)
    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [_error(["body"], f"cannot be stored: {exc}")]})
