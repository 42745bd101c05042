"""Settings of the candidate API, read from the environment (or a `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # With no MONGODB_URL the API starts an embedded MongoDB-wire server on a file under RUN_DIR.
    mongodb_url: str | None = None
    mongodb_db: str = "discovery"
    run_dir: Path = Path("runs/default")

    api_token: str = "dev-token"
    # Reads are open by default: dashboards and curl should not need the token to look.
    protect_reads: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    # Request bodies above this are refused with 413 (programs are tens of kB; 2 MB is generous).
    max_body_bytes: int = 2_000_000

    reaper_interval_s: float = 2.0
    default_lease_s: float = 600.0

    # Candidate pool and sampling.
    pool_size: int = 50
    # How the pool ranks: "quality" (fitness), "weighted" (fitness + cost_weight * log2 speed vs the seed)
    # or "pareto" (front of fitness and speed, then fitness). Speed comes from the evaluator (evaluator.cost).
    pool_ranking: Literal["quality", "weighted", "pareto"] = "quality"
    cost_weight: float = 0.1
    parent_top: int = 10
    reference_count: int = 4
    uct_c: float = 1.0

    # Fitness: equal weights, relative improvements clipped to +-10% before a sigmoid of slope 6.
    fitness_weight_loss: float = 1.0
    fitness_weight_benchmark: float = 1.0
    fitness_weight_judge: float = 1.0
    fitness_clip: float = 0.10
    fitness_slope: float = 6.0
    # A difference counts only beyond this many standard errors; "beats the baseline" needs beats_se of them.
    fitness_noise_se: float = 2.0
    fitness_beats_se: float = 2.0

    # Motivation similarity: "auto" (local model if installed, else TF-IDF), "tfidf", "local", "openai".
    embedding_backend: str = "auto"
    embedding_url: str | None = None
    embedding_model: str = "text-embedding-3-small"
    embedding_key: str | None = Field(default=None)


def get_settings() -> Settings:
    return Settings()
