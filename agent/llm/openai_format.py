"""The OpenAI chat-completions wire format, shared by the HTTP provider and the in-process GGUF one."""

from __future__ import annotations

from agent.llm.base import Reply
from agent.llm.errors import LLMError
from agent.llm.jsonout import schema_name


def response_format(schema: dict) -> dict:
    # Not strict: OpenAI's strict mode refuses ordinary pydantic schemas (optional fields, defaults);
    # pydantic validates the result anyway.
    return {"type": "json_schema", "json_schema": {"name": schema_name(schema), "schema": schema, "strict": False}}


def request_body(model: str, messages: list[dict], *, schema: dict | None, temperature: float | None,
                 max_tokens: int | None) -> dict:
    body: dict = {"model": model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if schema is not None:
        body["response_format"] = response_format(schema)
    return body


def parse_response(data: dict) -> Reply:
    """The reply text and the reported token counts (None where `usage` lacks them)."""
    if not isinstance(data, dict):
        raise LLMError(f"the chat completion is not a JSON object: {str(data)[:300]}")
    if data.get("error"):
        raise LLMError(f"the model answered with an error: {str(data['error'])[:500]}")
    choices = data.get("choices") or []
    if not choices:
        raise LLMError(f"the chat completion has no choices: {str(data)[:300]}")
    message = choices[0].get("message") or {}
    # A refusal or a tool call leaves content null; it counts as an empty reply.
    text = message.get("content") or ""
    if isinstance(text, list):
        text = "".join(str(part.get("text", "")) for part in text if isinstance(part, dict))
    usage = data.get("usage") or {}
    return Reply(text=str(text), prompt_tokens=_int(usage.get("prompt_tokens")),
                 completion_tokens=_int(usage.get("completion_tokens")), model=data.get("model"))


def _int(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
