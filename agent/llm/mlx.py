"""An MLX-LM model run in this process (Apple silicon): `mlx_lm.load` on a local folder.

mlx_lm is imported only when the model is loaded; when it is absent the provider says so at
construction. mlx_lm has no constrained decoding, so a schema is asked for in plain words.
"""

from __future__ import annotations

import asyncio
import threading

from agent.llm.base import LLM, Reply
from agent.llm.errors import ProviderUnavailable
from agent.llm.jsonout import with_json_instruction
from agent.llm.local import cached, require_module

DEFAULT_MAX_TOKENS = 1024


class MLXEngine:
    def __init__(self, path: str):
        import mlx_lm

        self.mlx_lm = mlx_lm
        self.model, self.tokenizer = mlx_lm.load(path)
        self.lock = threading.Lock()

    def chat(self, messages: list[dict], temperature: float | None, max_tokens: int) -> tuple[str, int, int]:
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        prompt_ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        kwargs: dict = {"max_tokens": max_tokens}
        if temperature is not None:
            kwargs.update(self._sampling(temperature))
        with self.lock:
            text = self.mlx_lm.generate(self.model, self.tokenizer, prompt=prompt, verbose=False, **kwargs)
        return text, len(prompt_ids), len(self.tokenizer.encode(text))

    @staticmethod
    def _sampling(temperature: float) -> dict:
        # Newer mlx_lm takes a sampler; older versions took `temp` directly.
        try:
            from mlx_lm.sample_utils import make_sampler
        except ImportError:
            return {"temp": temperature}
        return {"sampler": make_sampler(temp=temperature)}


class MLXChat(LLM):
    name = "mlx"

    def __init__(self, model_path: str, **kwargs):
        require_module("mlx_lm", "mlx", "`pip install mlx-lm` (it runs on Apple silicon only)")
        if not model_path:
            raise ProviderUnavailable("the mlx provider needs LLM_MODEL: a local model folder (or a hub name)")
        self.path = str(model_path)
        kwargs.setdefault("model", self.path)
        super().__init__(**kwargs)

    def engine(self) -> MLXEngine:
        return cached(("mlx", self.path), lambda: MLXEngine(self.path))

    async def _complete(self, messages, *, schema, temperature, max_tokens) -> Reply:
        sent = with_json_instruction(messages, schema) if schema is not None else messages
        engine = await asyncio.to_thread(self.engine)
        text, prompt_tokens, completion_tokens = await asyncio.to_thread(
            engine.chat, sent, temperature, max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS)
        return Reply(text, prompt_tokens, completion_tokens, self.model)
