"""Polling helper for tests that wait on a live API or process."""

from __future__ import annotations

import asyncio
import time


async def wait_until(predicate, timeout_s: float = 30.0):
    """The first truthy value of `await predicate()`, polled every 0.1 s; AssertionError after TIMEOUT_S."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := await predicate():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")
