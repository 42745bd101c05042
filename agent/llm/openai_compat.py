"""Any OpenAI-compatible chat server over HTTP: OpenAI, vLLM, SGLang, llama.cpp's server, Ollama,
`mlx_lm.server`.

`base_url` is the API root including its version, e.g. `https://api.openai.com/v1` or
`http://localhost:11434/v1`; requests go to `{base_url}/chat/completions`. A schema is sent as a
`json_schema` response format; a server that refuses it (400/404/415/422/501) is asked once more in
plain words instead, and is not sent the format again by this object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from agent.llm.base import LLM, Reply
from agent.llm.errors import LLMConnectionError, LLMError, LLMHTTPError
from agent.llm.jsonout import with_json_instruction
from agent.llm.openai_format import parse_response, request_body
from agent.llm.retry import RetryPolicy, is_retryable_status, retry_after_seconds

# Statuses with which servers refuse an unsupported `response_format` (varies by server).
SCHEMA_REFUSED = frozenset({400, 404, 415, 422, 501})


class OpenAIChat(LLM):
    name = "openai"

    def __init__(self, base_url: str, *, api_key: str | None = None, model: str = "", timeout_s: float = 120.0,
                 retry: RetryPolicy | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable] = asyncio.sleep, **kwargs):
        super().__init__(model=model, **kwargs)
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.transport = transport
        self.sleep = sleep
        self.schema_supported = True

    async def _complete(self, messages, *, schema, temperature, max_tokens) -> Reply:
        use_format = schema is not None and self.schema_supported
        sent = messages if use_format or schema is None else with_json_instruction(messages, schema)
        body = request_body(self.model, sent, schema=schema if use_format else None,
                            temperature=temperature, max_tokens=max_tokens)
        # A client per call: an LLM object may outlive the event loop it was first used on.
        async with self._client() as client:
            try:
                data = await self._post(client, body)
            except LLMHTTPError as err:
                if not (use_format and err.status in SCHEMA_REFUSED):
                    raise
                self.schema_supported = False
                body = request_body(self.model, with_json_instruction(messages, schema), schema=None,
                                    temperature=temperature, max_tokens=max_tokens)
                data = await self._post(client, body)
        return parse_response(data)

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s), headers=headers, transport=self.transport)

    async def _post(self, client: httpx.AsyncClient, body: dict) -> dict:
        """POST with bounded retries on 429/5xx/connection errors, honouring Retry-After."""
        retries = max(0, self.retry.max_retries)
        for retry in range(retries + 1):
            last = retry == retries
            try:
                response = await client.post(self.url, json=body)
            except httpx.TransportError as err:
                if last:
                    raise LLMConnectionError(f"could not reach {self.url} after {retries + 1} attempts: "
                                             f"{type(err).__name__}: {err}") from err
                await self.sleep(self.retry.delay(retry))
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError as err:
                    raise LLMError(f"{self.url} answered with non-JSON: {response.text[:300]!r}") from err
            if last or not is_retryable_status(response.status_code):
                raise LLMHTTPError(response.status_code, response.text, url=self.url)
            await self.sleep(self.retry.delay(retry, retry_after_seconds(response.headers)))
        raise AssertionError("unreachable")  # the loop returns or raises on its last pass

    def __repr__(self) -> str:
        return f"OpenAIChat(base_url={self.base_url!r}, model={self.model!r})"
