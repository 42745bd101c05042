"""The Researcher: proposes the next experiment (name, motivation, program) from the candidate pool.

Handles `research` jobs. It samples a parent and references from the pool, retrieves cognition
about the parent's weaknesses, and asks the LLM for a design: a full program or SEARCH/REPLACE edits
to the parent. Edits that do not apply go back to the model with the reason; a motivation too close
to a stored one goes to an LLM judge, and a repeat is sent back with the similar ideas. With no LLM
configured, the offline proposer mutates the parent with its motif library. Either way the new
experiment is created in the API and handed to the engineer.
"""

from __future__ import annotations

import hashlib
import logging
import re

from pydantic import BaseModel, Field, field_validator

from agent import prompts
from agent.llm import BudgetExceeded, get_llm, tokens_used
from agent.llm.jsonout import strip_code_fence
from agent.proposer import mutate
from database.client import ApiError
from database.worker import CandidateError, Outcome

log = logging.getLogger("researcher")
MAX_PROPOSALS = 3  # re-asks for edits that do not apply or repeated ideas
SIMILARITY_THRESHOLD = 0.85  # above this, the novelty judge decides whether an idea is a repeat


class Edit(BaseModel):
    search: str = Field(min_length=1, description="exact text of the parent program to replace")
    replace: str = Field(description="the new text")


class Design(BaseModel):
    name: str = Field(min_length=3, max_length=80, description="short lower-case identifier, e.g. delta-fir-gate")
    motivation: str = Field(min_length=40, description="what changes, why, and what it should improve")
    program: str | None = Field(default=None, description="the complete new program, or null when giving edits")
    edits: list[Edit] | None = Field(default=None, description="SEARCH/REPLACE edits to the parent program")

    @field_validator("program")
    @classmethod
    def unfenced(cls, value: str | None) -> str | None:
        return strip_code_fence(value) if value else value

    @field_validator("name")
    @classmethod
    def identifier(cls, value: str) -> str:
        cleaned = re.sub(r"[^a-z0-9_-]+", "-", value.strip().lower()).strip("-")
        if len(cleaned) < 3:
            raise ValueError("the name needs at least 3 letters or digits")
        return cleaned


class NoveltyVerdict(BaseModel):
    duplicate: bool = Field(description="true when the new idea is essentially one of the stored ones")
    reason: str


def apply_edits(parent: str, edits: list[Edit]) -> tuple[str, list[str]]:
    """Apply edits in order; each must match the current text exactly once. Returns (program, problems)."""
    program, problems = parent, []
    for number, edit in enumerate(edits, 1):
        count = program.count(edit.search)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            problems.append(f"edit {number}: the SEARCH text {where} in the program: {edit.search[:120]!r}")
            continue
        program = program.replace(edit.search, edit.replace, 1)
    return program, problems


async def sample_parent(client, fidelity: str, seed: int | None) -> tuple[dict, list[dict]]:
    try:
        sample = await client.sample(fidelity=fidelity, seed=seed)
        return sample["parent"], sample.get("references") or []
    except ApiError as err:
        if err.status != 404:
            raise
    baseline = await client.baseline(fidelity)
    if baseline is None:
        raise CandidateError(f"nothing to start from: the pool is empty and there is no baseline at {fidelity!r}")
    return baseline, []


def offline_designs(parent: dict, seed: int):
    """Motif mutations of the parent, in a reproducible order: the caller takes the first untried one."""
    for attempt in range(MAX_PROPOSALS * 3):
        proposal = mutate(parent["program"], seed=seed * 1000 + attempt, parent_name=parent.get("name"))
        yield Design(name=proposal.name, motivation=proposal.motivation, program=proposal.program)


async def llm_design(llm, client, parent: dict, references: list[dict], fidelity: str) -> Design:
    cognition = await client.search_cognition(prompts.cognition_query(parent), k=3)
    messages = prompts.research_messages(parent, references, cognition, fidelity)
    for _ in range(MAX_PROPOSALS):
        design = await llm.structured(messages, Design)
        program = design.program
        if design.edits:
            program, problems = apply_edits(parent["program"], design.edits)
            if problems:
                messages += prompts.followup(design, "Some edits did not apply:\n" + "\n".join(problems) +
                                             "\nGive the edits again so that each SEARCH text matches the parent "
                                             "program exactly once, or give the full program.")
                continue
        if not program or not program.strip():
            messages += prompts.followup(design, "Neither a program nor edits were given. Give the full program.")
            continue
        repeat = await find_repeat(llm, client, design.motivation)
        if repeat:
            messages += prompts.followup(design, "This idea repeats experiments already run:\n" + repeat +
                                         "\nPropose a clearly different idea.")
            continue
        return design.model_copy(update={"program": program, "edits": None})
    raise CandidateError(f"the researcher gave no usable design after {MAX_PROPOSALS} attempts")


async def find_repeat(llm, client, motivation: str) -> str | None:
    """The similar stored ideas, as text, when the judge says this motivation repeats one; else None."""
    hits = [h for h in await client.similar(motivation, k=3) if h["score"] >= SIMILARITY_THRESHOLD]
    if not hits:
        return None
    listing = "\n".join(f"- #{h['index']} {h['name']}: {h['motivation'][:400]}" for h in hits)
    verdict = await llm.structured(prompts.novelty_messages(motivation, listing), NoveltyVerdict)
    return listing if verdict.duplicate else None


async def handle_research(job: dict, client, *, llm=None) -> Outcome:
    payload = job.get("payload") or {}
    fidelity = payload.get("fidelity", "smoke")
    # The proposal seed varies per chain (which parent, which mutation); `seed` stays the run's training
    # seed, the baseline's, so that candidates and baseline see the same data order and initial draws.
    seed = int(payload.get("proposal_seed", payload.get("seed", 0)))
    llm = llm if llm is not None else get_llm("researcher")
    parent, references = await sample_parent(client, fidelity, seed)
    tokens_before = tokens_used(llm)
    common = {"parent": parent["index"], "references": [r["index"] for r in references], "fidelity": fidelity,
              "source_job": job["id"]}
    design = None
    if llm is not None:
        try:
            design = await llm_design(llm, client, parent, references, fidelity)
        except BudgetExceeded as err:
            log.warning("researching offline from here on: %s", err)
    if design is None:
        # The name carries a hash of the program: a name taken means this mutation was tried already.
        for design in offline_designs(parent, seed):
            try:
                experiment = await client.create_experiment(name=design.name, program=design.program,
                                                            motivation=design.motivation, origin="offline", **common)
                break
            except ApiError as err:
                if err.status != 409:
                    raise
        else:
            raise CandidateError("the offline proposer found no untried mutation of this parent")
    else:
        name = design.name
        for _ in range(3):
            try:
                experiment = await client.create_experiment(name=name, program=design.program,
                                                            motivation=design.motivation, origin="llm", **common)
                break
            except ApiError as err:
                if err.status != 409:
                    raise
                name = f"{design.name}-{hashlib.sha1((name + design.program).encode()).hexdigest()[:6]}"
        else:
            raise CandidateError(f"could not find a free name for {design.name!r}")
    index = experiment["index"]
    tokens = tokens_used(llm) - tokens_before
    if tokens:
        await client.update_experiment(index, costs={"llm_tokens": tokens})
    log.info("proposed #%s %s (parent #%s)", index, design.name, parent["index"])
    return Outcome({"experiment": index, "name": design.name, "parent": parent["index"]},
                   next_jobs=[{"kind": "engineer", "experiment": index, "payload": payload}])

