"""LLM providers behind one small async interface.

    from agent.llm import get_llm
    llm = get_llm("researcher")                       # None: no LLM configured, use the offline path
    design = await llm.structured(messages, Design)   # validated pydantic instance (re-asks on bad output)
    completion = await llm.chat(messages)             # Completion(text, prompt_tokens, completion_tokens, cost, model)
    llm.usage                                          # {calls, prompt_tokens, completion_tokens, cost}

Providers: an OpenAI-compatible HTTP server, MLX-LM and GGUF models in process, and a scripted fake
for tests. Settings come from `LLM_*` variables (see `agent.llm.settings`).
"""

from agent.llm.base import LLM, Completion, Reply, estimate_tokens, tokens_used
from agent.llm.budget import Budget
from agent.llm.errors import (
    BudgetExceeded,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOutputError,
    ProviderUnavailable,
)
from agent.llm.factory import get_llm, register_provider, shared_budget
from agent.llm.gguf import GGUFChat, find_packaged_gguf
from agent.llm.jsonout import extract_json
from agent.llm.mlx import MLXChat
from agent.llm.openai_compat import OpenAIChat
from agent.llm.retry import RetryPolicy
from agent.llm.scripted import ScriptedLLM
from agent.llm.settings import LLMSettings

__all__ = [
    "LLM", "Budget", "BudgetExceeded", "Completion", "GGUFChat", "LLMConnectionError", "LLMError", "LLMHTTPError",
    "LLMOutputError", "LLMSettings", "MLXChat", "OpenAIChat", "ProviderUnavailable", "Reply", "RetryPolicy",
    "ScriptedLLM", "estimate_tokens", "extract_json", "find_packaged_gguf", "get_llm", "register_provider",
    "shared_budget", "tokens_used",
]
