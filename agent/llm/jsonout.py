"""Getting JSON out of a model's reply, and asking for it in plain words.

Models wrap JSON in Markdown fences, put a sentence before it, or add a remark after it, whatever
the prompt says; the extraction tolerates all three rather than failing the attempt.
"""

from __future__ import annotations

import json
import re

FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


CODE_FENCE = re.compile(r"^\s*```[\w+.-]*[ \t]*\n(.*?)\n\s*```\s*$", re.DOTALL)


def strip_code_fence(source: str) -> str:
    """A program field without the Markdown code block models often wrap it in, despite being asked not to."""
    match = CODE_FENCE.match(source)
    # A source file ends with a newline; the fence's closing line took it.
    return match.group(1) + "\n" if match else source


class NoJSON(ValueError):
    """The reply holds no JSON value (or is empty)."""


def extract_json(text: str | None):
    """The JSON value in `text`: the whole reply, a fenced block, or the first object after some prose."""
    text = (text or "").strip()
    if not text:
        raise NoJSON("the reply was empty")
    try:
        return json.loads(text)
    except ValueError:
        pass
    for block in FENCE.findall(text):
        try:
            return json.loads(block)
        except ValueError:
            continue
    found = _first_embedded(text)
    if found is not None:
        return found
    raise NoJSON(f"no JSON object found in the reply (it starts {text[:200]!r})")


def _first_embedded(text: str):
    """The first decodable object after leading prose; a list only when no object decodes.

    A reply may mention "[1]" or "{x}" in its prose before the real answer, so an object is preferred.
    """
    decoder = json.JSONDecoder()
    first_list = None
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
        if first_list is None and isinstance(value, list):
            first_list = value
    return first_list


def json_instruction(schema: dict) -> str:
    """The plain request for JSON, for providers that cannot enforce a schema."""
    return ("Reply with a single JSON object only, no prose and no Markdown fences. It must match this JSON "
            f"schema:\n{json.dumps(schema, separators=(',', ':'))}")


def with_json_instruction(messages: list[dict], schema: dict) -> list[dict]:
    """A copy of `messages` that ends by asking for JSON matching `schema` (the caller's list is untouched).

    The request joins the last user message rather than following it: some chat templates refuse two
    user turns in a row.
    """
    instruction = json_instruction(schema)
    if messages and messages[-1].get("role") == "user" and isinstance(messages[-1].get("content"), str):
        last = messages[-1]
        return [*messages[:-1], {**last, "content": f"{last['content']}\n\n{instruction}"}]
    return [*messages, {"role": "user", "content": instruction}]


def schema_name(schema: dict) -> str:
    """A name for `response_format` (servers accept only letters, digits, '_' and '-')."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))
    return name[:64] or "output"
