"""A scripted stand-in for a model, for tests and offline demonstrations.

    llm = ScriptedLLM(responses=['not json', '{"score": 0.5}'])    # replies in order
    llm = ScriptedLLM(responses=lambda messages: '{"score": 0.5}')  # or computed from the prompt
    llm.calls[1]["messages"]                                        # what each call was sent

An item of `responses` may be a string (the reply; "" tests empty output), a `Reply` (to report token
counts), an exception (instance or class) to raise, or a function(messages) -> str. Running out of
replies raises `LLMError`, so a test notices an unexpected extra call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from agent.llm.base import LLM, Reply
from agent.llm.errors import LLMError

Responder = Callable[[list[dict]], "str | Reply"]


class ScriptedLLM(LLM):
    name = "scripted"

    def __init__(self, responses: Sequence | Responder = (), *, model: str = "scripted", **kwargs):
        super().__init__(model=model, **kwargs)
        self.responder = responses if callable(responses) else None
        self.responses = [] if callable(responses) else list(responses)
        self.calls: list[dict] = []

    async def _complete(self, messages, *, schema, temperature, max_tokens) -> Reply:
        # A copy: the caller may keep appending to its list after the call.
        self.calls.append({"messages": [dict(m) for m in messages], "schema": schema,
                           "temperature": temperature, "max_tokens": max_tokens})
        if self.responder is not None:
            item = self.responder
        elif len(self.calls) <= len(self.responses):
            item = self.responses[len(self.calls) - 1]
        else:
            raise LLMError(f"ScriptedLLM has no reply scripted for call {len(self.calls)} "
                           f"(it has {len(self.responses)})")
        if isinstance(item, BaseException) or (isinstance(item, type) and issubclass(item, BaseException)):
            raise item
        if callable(item):
            item = item(messages)
            if inspect.isawaitable(item):
                item = await item
        if isinstance(item, Reply):
            return item if item.model else Reply(item.text, item.prompt_tokens, item.completion_tokens, self.model)
        return Reply(text="" if item is None else str(item), model=self.model)
