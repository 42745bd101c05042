"""Helpers for providers that run the model in this process: runtime checks and a model cache.

Loading a model takes seconds to minutes and much memory, while `get_llm` builds a new LLM object
per job; so loaded models live in a process-wide cache keyed by what was loaded, and every LLM
object of the process shares them.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable

from agent.llm.errors import ProviderUnavailable

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()


def has_module(name: str) -> bool:
    """Whether `name` is importable, without importing it (importing may be slow or have side effects)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_module(name: str, provider: str, hint: str) -> None:
    if not has_module(name):
        raise ProviderUnavailable(f"the {provider} provider needs the Python package {name!r}, which is not "
                                  f"installed: {hint}")


def cached(key: tuple, load: Callable[[], object]) -> object:
    """The object loaded for `key`, loading it once. Loads are serialised: two at once could exhaust memory."""
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def forget(key: tuple | None = None) -> None:
    """Drop one cached model (or all), e.g. to free memory between tests."""
    with _cache_lock:
        if key is None:
            _cache.clear()
        else:
            _cache.pop(key, None)
