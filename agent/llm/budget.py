"""Spending caps shared by every LLM object of a process.

A `Budget` is checked before each call and charged after it. Only NEW calls are refused: a call
already in flight finishes and is charged, so the totals may end slightly above a token or cost cap
(the call count, reserved up front, never does). A plain lock makes it safe to share between threads
and between tasks of one event loop; nothing is awaited while the lock is held.
"""

from __future__ import annotations

import threading

from agent.llm.errors import BudgetExceeded


class Budget:
    def __init__(self, max_tokens: int | None = None, max_cost: float | None = None,
                 max_calls: int | None = None):
        self.max_tokens, self.max_cost, self.max_calls = max_tokens, max_cost, max_calls
        self._lock = threading.Lock()
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def begin(self, who: str = "LLM") -> None:
        """Reserve one call, or raise `BudgetExceeded` when any cap is already reached."""
        with self._lock:
            reason = self._exhausted()
            if reason:
                raise BudgetExceeded(f"{who}: this process's LLM budget is spent ({reason}); no new call is made")
            self.calls += 1

    def charge(self, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost += cost

    def _exhausted(self) -> str | None:
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"{self.calls} calls of at most {self.max_calls}"
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            return f"{self.tokens} tokens of at most {self.max_tokens}"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"cost {self.cost:.4f} of at most {self.max_cost:.4f}"
        return None

    @property
    def usage(self) -> dict:
        with self._lock:
            return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens, "cost": self.cost}

    def __repr__(self) -> str:
        caps = {"max_tokens": self.max_tokens, "max_cost": self.max_cost, "max_calls": self.max_calls}
        return f"Budget({', '.join(f'{k}={v}' for k, v in caps.items() if v is not None)}; used {self.usage})"
