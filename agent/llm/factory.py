"""Building the LLM for a role from the settings, through a registry of providers.

    llm = get_llm("researcher")      # an LLM, or None when none is configured (take the offline path)

Every LLM built without an explicit budget shares one process-wide `Budget` per set of caps, so the
caps hold for everything a process spends, whichever role. Each worker process has its own: with one
process per role (`make run`, compose), a run may spend up to the cap once per role.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from agent.llm.base import LLM
from agent.llm.budget import Budget
from agent.llm.errors import ProviderUnavailable
from agent.llm.retry import RetryPolicy
from agent.llm.settings import ROLES, LLMSettings, RoleConfig

# name -> builder(settings, role config, common keyword arguments of `LLM.__init__`); None: no LLM for the role
Builder = Callable[[LLMSettings, RoleConfig, dict], "LLM | None"]
_registry: dict[str, Builder] = {}

_budgets: dict[tuple, Budget] = {}
_budgets_lock = threading.Lock()


def register_provider(name: str, builder: Builder) -> None:
    """Make `LLM_PROVIDER=name` build an LLM with `builder` (a later registration replaces an earlier one)."""
    _registry[name] = builder


def providers() -> list[str]:
    return sorted(_registry)


def shared_budget(settings: LLMSettings) -> Budget:
    """The process-wide budget for the settings' caps."""
    key = (settings.budget_max_tokens, settings.budget_max_cost, settings.budget_max_calls)
    with _budgets_lock:
        if key not in _budgets:
            _budgets[key] = Budget(*key)
        return _budgets[key]


def get_llm(role: str, settings: LLMSettings | None = None, budget: Budget | None = None) -> LLM | None:
    """The LLM configured for `role` (researcher, engineer, analyst, judge), or None when none is."""
    settings = settings if settings is not None else LLMSettings()
    config = settings.for_role(role)
    provider = settings.resolved_provider
    if provider == "none":
        return None
    if provider not in _registry:
        raise ProviderUnavailable(f"unknown LLM_PROVIDER {provider!r}; known: {', '.join(providers())}, none")
    common = {"temperature": config.temperature, "max_tokens": config.max_tokens,
              "budget": budget if budget is not None else shared_budget(settings),
              "price_prompt_per_1k": settings.price_prompt_per_1k,
              "price_completion_per_1k": settings.price_completion_per_1k,
              "attempts": settings.structured_attempts}
    return _registry[provider](settings, config, common)


def _openai(settings: LLMSettings, config: RoleConfig, common: dict) -> LLM:
    from agent.llm.openai_compat import OpenAIChat

    if not settings.base_url:
        raise ProviderUnavailable("LLM_PROVIDER=openai needs LLM_BASE_URL (e.g. https://api.openai.com/v1)")
    retry = RetryPolicy(settings.max_retries, settings.backoff_s, settings.backoff_max_s)
    return OpenAIChat(settings.base_url, api_key=settings.api_key, model=config.model,
                      timeout_s=settings.timeout_s, retry=retry, **common)


def _mlx(settings: LLMSettings, config: RoleConfig, common: dict) -> LLM:
    from agent.llm.mlx import MLXChat

    return MLXChat(config.model, **common)


def _gguf(settings: LLMSettings, config: RoleConfig, common: dict) -> LLM:
    from agent.llm.gguf import GGUFChat

    return GGUFChat(config.model or None, n_ctx=settings.n_ctx, threads=settings.threads, **common)


def _scripted(settings: LLMSettings, config: RoleConfig, common: dict) -> LLM | None:
    """Replies from the JSON file LLM_SCRIPT, in one of two shapes.

    A list: every role gets these replies, starting afresh with each `get_llm` call (unit tests).
    An object `{role: [replies]}`: each role of this process has one scripted model that goes through its
    list across calls, so that a whole run can be scripted role by role (every worker process reads its
    own roles' lists); a role the object leaves out has no LLM and takes its offline path.
    """
    from agent.llm.scripted import ScriptedLLM

    if not settings.script:
        raise ProviderUnavailable("LLM_PROVIDER=scripted needs LLM_SCRIPT: a JSON file with a list of replies "
                                  "or an object of lists by role")
    path = Path(settings.script).resolve()
    script = json.loads(path.read_text())
    if isinstance(script, dict):
        unknown = sorted(set(script) - set(ROLES))
        if unknown:
            raise ProviderUnavailable(f"LLM_SCRIPT {path}: unknown roles {unknown}; the roles are {', '.join(ROLES)}")
        if config.role not in script:
            return None
        with _scripted_lock:
            key = (str(path), config.role)
            if key not in _scripted_models:
                _scripted_models[key] = ScriptedLLM(_as_texts(script[config.role], path),
                                                    model=config.model or "scripted", **common)
            return _scripted_models[key]
    return ScriptedLLM(_as_texts(script, path), model=config.model or "scripted", **common)


def _as_texts(replies, path: Path) -> list[str]:
    if not isinstance(replies, list):
        raise ProviderUnavailable(f"LLM_SCRIPT {path} must hold a JSON list of replies, or an object of such lists")
    # Replies that are JSON values rather than strings are sent as their JSON text.
    return [r if isinstance(r, str) else json.dumps(r) for r in replies]


_scripted_models: dict[tuple[str, str], LLM] = {}
_scripted_lock = threading.Lock()


for _name, _builder in {"openai": _openai, "mlx": _mlx, "gguf": _gguf, "scripted": _scripted}.items():
    register_provider(_name, _builder)
