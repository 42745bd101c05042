"""The debugger: a small fix for a program that failed the engineer's checks or crashed in training.

    fix = await propose_fix(program, motivation, error, llm)      # Fix(program, explanation) or None

With an LLM configured, it asks for the smallest change that removes the error while keeping the
design's idea. Without one, an offline fallback is tried: by default the offline proposer's mutation
of the program's genome, which replaces the program with a working variant rather than repairing it.
The fallback is a plain function, so that callers (and tests) can pass their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pydantic import BaseModel, Field, field_validator

from agent import prompts
from agent.llm import get_llm
from agent.llm.jsonout import strip_code_fence
from agent.proposer import mutate


class Fix(BaseModel):
    program: str = Field(min_length=1, description="the complete fixed program file")
    explanation: str = Field(description="what was changed and why, in one or two sentences")

    @field_validator("program")
    @classmethod
    def unfenced(cls, value: str) -> str:
        return strip_code_fence(value)


# (program, motivation, error, attempt number) -> a fix, or None when there is none to offer.
OfflineFix = Callable[[str, str, str, int], "Fix | None"]


def debugger_llm():
    """The engineer's LLM, or None when none is configured."""
    return get_llm("engineer")


def mutation_fix(program: str, motivation: str, error: str, attempt: int) -> Fix | None:
    """Offline: the offline proposer's variant of the program's genome (the seed's, for a program without one)."""
    # Reproducible for the same program and attempt, different across attempts.
    seed = int(hashlib.sha256(f"{attempt}:{program}".encode()).hexdigest()[:8], 16)
    proposal = mutate(program, seed=seed)
    return Fix(program=proposal.program,
               explanation=f"without an LLM, the offline proposer's variant {proposal.name} replaces the "
                           f"program: {proposal.motivation}")


async def propose_fix(program: str, motivation: str, error: str, llm, *, attempt: int = 0,
                      offline: OfflineFix | None = mutation_fix) -> Fix | None:
    if llm is not None:
        return await llm.structured(prompts.debug_messages(program, motivation, error), Fix)
    return offline(program, motivation, error, attempt) if offline is not None else None

