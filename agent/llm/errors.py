"""Errors raised by the LLM layer.

All derive from `LLMError`, so a caller that wants to fall back on any LLM failure catches one class.
None of them means "the candidate is bad": they are infrastructure or model-output failures, and the
job queue's retry is the right answer to most of them.
"""

from __future__ import annotations


class LLMError(RuntimeError):
    """Any failure of an LLM call."""


class ProviderUnavailable(LLMError):
    """The configured provider cannot run here: its runtime is not installed or its model is missing."""


class LLMHTTPError(LLMError):
    """The server answered with an error status that retrying did not (or could not) cure."""

    def __init__(self, status: int, detail: str, *, url: str = ""):
        self.status, self.detail, self.url = status, detail, url
        super().__init__(f"LLM server {url or ''} answered {status}: {detail[:500]}".replace("  ", " "))


class LLMConnectionError(LLMError):
    """The server could not be reached (or timed out) on every attempt."""


class BudgetExceeded(LLMError):
    """A per-run cap (tokens, cost or calls) is reached: no new call is started."""


class LLMOutputError(LLMError):
    """The model did not produce output that validates, after every allowed attempt."""

    def __init__(self, message: str, *, attempts: int, last_error: str, last_text: str):
        self.attempts, self.last_error, self.last_text = attempts, last_error, last_text
        super().__init__(message)
