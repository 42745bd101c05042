"""LLM settings, read from `LLM_*` environment variables (or a `.env` file).

With nothing set, no LLM is configured (`provider` resolves to "none") and the agents take their
offline paths. Setting `LLM_BASE_URL` alone is enough to use an OpenAI-compatible server.

Each role (researcher, engineer, analyst, judge) may override the model, temperature and max tokens,
e.g. `LLM_JUDGE_MODEL=gpt-4o-mini`; unset overrides fall back to `LLM_MODEL`, `LLM_TEMPERATURE`,
`LLM_MAX_TOKENS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROLES = ("researcher", "engineer", "analyst", "judge")
PROVIDERS = ("openai", "mlx", "gguf", "scripted", "none")


@dataclass(frozen=True)
class RoleConfig:
    role: str
    model: str
    temperature: float | None
    max_tokens: int | None


class LLMSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLM_", env_file=".env", extra="ignore")

    # openai | mlx | gguf | scripted | none; unset: "openai" when a base URL is set, else "none".
    provider: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    # A model name for a server; a local folder (mlx) or a .gguf file, folder or package (gguf).
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    # Replies that fail validation are asked again with the error, up to this many attempts in all.
    structured_attempts: int = 3

    # Prices per 1000 tokens, for the cost figures and the cost cap (0: cost is not tracked).
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0

    # Caps per process (each worker has its own); unset means no cap. Reached caps stop new calls only.
    budget_max_tokens: int | None = None
    budget_max_cost: float | None = None
    budget_max_calls: int | None = None

    # In-process GGUF models: context length and CPU threads (unset: the runtime's choice).
    n_ctx: int = 8192
    threads: int | None = None

    # The scripted provider: a JSON file holding a list of replies, or an object of lists by role.
    script: str | None = None

    researcher_model: str | None = None
    researcher_temperature: float | None = None
    researcher_max_tokens: int | None = None
    engineer_model: str | None = None
    engineer_temperature: float | None = None
    engineer_max_tokens: int | None = None
    analyst_model: str | None = None
    analyst_temperature: float | None = None
    analyst_max_tokens: int | None = None
    judge_model: str | None = None
    judge_temperature: float | None = None
    judge_max_tokens: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data):
        # `.env.example` ships `LLM_BASE_URL=` and compose passes `${LLM_MODEL:-}`: empty means unset.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not (isinstance(value, str) and not value.strip())}
        return data

    @property
    def resolved_provider(self) -> str:
        return (self.provider or ("openai" if self.base_url else "none")).strip().lower()

    def for_role(self, role: str) -> RoleConfig:
        if role not in ROLES:
            raise ValueError(f"unknown LLM role {role!r}; the roles are {', '.join(ROLES)}")

        def pick(field: str):
            value = getattr(self, f"{role}_{field}")
            return value if value is not None else getattr(self, field)

        return RoleConfig(role=role, model=pick("model") or "", temperature=pick("temperature"),
                          max_tokens=pick("max_tokens"))
