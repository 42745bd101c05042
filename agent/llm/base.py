"""The LLM interface and the logic every provider shares.

    completion = await llm.chat(messages, schema=None, temperature=None, max_tokens=None)
    design = await llm.structured(messages, Design)          # a validated pydantic instance
    llm.usage                                                 # {calls, prompt_tokens, completion_tokens, cost}

A provider implements only `_complete` (one request, returning a `Reply`); the base class checks and
charges the budget, fills in token counts the provider did not report, prices the call, keeps the
totals, and runs the re-ask loop of `structured`.
"""

from __future__ import annotations

import json
import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from agent.llm.budget import Budget
from agent.llm.errors import LLMOutputError
from agent.llm.jsonout import NoJSON, extract_json

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Reply:
    """What a provider got back from one request; token counts are None when it reported none."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class Completion:
    """One accounted call: the reply text, its token counts (reported or estimated) and its cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    model: str
    estimated: bool = False


def estimate_tokens(text: str) -> int:
    """About four characters per token: the usual rule of thumb for English and code with BPE tokenizers."""
    return math.ceil(len(text) / 4) if text else 0


def tokens_used(llm) -> int:
    """Prompt plus completion tokens spent so far by `llm` (0 for None: the offline path spends none)."""
    usage = getattr(llm, "usage", None) or {}
    return int(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))


def messages_text(messages: list[dict]) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        # Multi-part content (a list of {type, text} parts) counts by its text parts.
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


class LLM(ABC):
    """A chat model with defaults for one role (model, temperature, max tokens) and a shared budget."""

    name: str = "llm"

    def __init__(self, *, model: str = "", temperature: float | None = None, max_tokens: int | None = None,
                 budget: Budget | None = None, price_prompt_per_1k: float = 0.0,
                 price_completion_per_1k: float = 0.0, attempts: int = 3):
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.budget = budget if budget is not None else Budget()
        self.price_prompt_per_1k = price_prompt_per_1k
        self.price_completion_per_1k = price_completion_per_1k
        self.attempts = max(1, attempts)
        self._lock = threading.Lock()
        self._usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}

    @abstractmethod
    async def _complete(self, messages: list[dict], *, schema: dict | None, temperature: float | None,
                        max_tokens: int | None) -> Reply:
        """One request to the model. `schema`, when given, is a JSON schema the reply should follow."""

    async def chat(self, messages: list[dict], *, schema: dict | None = None, temperature: float | None = None,
                   max_tokens: int | None = None) -> Completion:
        """One chat completion, charged to the budget; raises `BudgetExceeded` before calling when spent.

        A call that fails still counts as a call (it was started), but has no tokens to charge.
        """
        self.budget.begin(f"{self.name} {self.model}".strip())
        with self._lock:
            self._usage["calls"] += 1
        reply = await self._complete(
            messages, schema=schema,
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens)
        text = reply.text or ""
        estimated = reply.prompt_tokens is None or reply.completion_tokens is None
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else \
            estimate_tokens(messages_text(messages))
        completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else \
            estimate_tokens(text)
        cost = (prompt_tokens * self.price_prompt_per_1k + completion_tokens * self.price_completion_per_1k) / 1000
        self.budget.charge(prompt_tokens, completion_tokens, cost)
        with self._lock:
            self._usage["prompt_tokens"] += prompt_tokens
            self._usage["completion_tokens"] += completion_tokens
            self._usage["cost"] += cost
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost=cost,
                          model=reply.model or self.model, estimated=estimated)

    async def structured(self, messages: list[dict], model_cls: type[M], *, attempts: int | None = None,
                         temperature: float | None = None, max_tokens: int | None = None) -> M:
        """The reply parsed and validated as `model_cls`.

        An empty, non-JSON or invalid reply is answered with the error as a new user message and asked
        again, at most `attempts` times in all (the setting by default); then `LLMOutputError`.
        """
        attempts = max(1, attempts or self.attempts)
        schema = model_cls.model_json_schema()
        conversation = list(messages)
        error, text = "", ""
        for _ in range(attempts):
            completion = await self.chat(conversation, schema=schema, temperature=temperature,
                                         max_tokens=max_tokens)
            text = completion.text
            try:
                return model_cls.model_validate(extract_json(text))
            except (NoJSON, ValidationError) as err:
                error = _describe(err)
            if text.strip():
                conversation.append({"role": "assistant", "content": text})
            conversation.append({"role": "user", "content": retry_prompt(error, schema)})
        raise LLMOutputError(
            f"{self.name} {self.model}: no valid {model_cls.__name__} after {attempts} attempts; last error: {error}",
            attempts=attempts, last_error=error, last_text=text)

    @property
    def usage(self) -> dict:
        """Totals of this object's calls (the budget holds the run's)."""
        with self._lock:
            return dict(self._usage)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


def _describe(err: Exception) -> str:
    if isinstance(err, ValidationError):
        # Field paths and messages only: the offending input is already in the conversation.
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors())
    return str(err)


def retry_prompt(error: str, schema: dict) -> str:
    return (f"Your reply could not be used: {error}\nAnswer again with only a JSON object matching this schema "
            f"(no prose, no Markdown fences):\n{json.dumps(schema, separators=(',', ':'))}")
