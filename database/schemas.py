"""Request and response models of the candidate API, one family per resource."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from database.bson_safe import check

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


class Fidelity(StrEnum):
    synthetic = "synthetic"
    smoke = "smoke"
    explore = "explore"
    verify = "verify"


class Origin(StrEnum):
    seed = "seed"
    offline = "offline"
    llm = "llm"
    imported = "import"
    promoted = "promoted"  # a candidate's copy at the next rung of the ladder
    human = "human"  # a program submitted by hand (POST /programs, pipeline --program)


class ExperimentStatus(StrEnum):
    proposed = "proposed"
    checked = "checked"
    trained = "trained"
    evaluated = "evaluated"
    analysed = "analysed"
    quarantined = "quarantined"
    failed = "failed"
    vetoed = "vetoed"  # taken out of the pool by hand (POST /experiments/{index}/veto)


class JobKind(StrEnum):
    research = "research"
    engineer = "engineer"
    train = "train"
    evaluate = "evaluate"
    analyse = "analyse"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class Strict(BaseModel):
    """A request body: no unknown fields, and nothing MongoDB cannot store (see database.bson_safe)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def storable(cls, data: Any) -> Any:
        return check(data)


class ExperimentCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    program: str = Field(min_length=1)
    motivation: str = ""
    parent: int | None = Field(default=None, ge=1)
    references: list[int] = Field(default_factory=list)
    fidelity: Fidelity = Fidelity.smoke
    origin: Origin = Origin.llm
    is_baseline: bool = False
    source_job: str | None = None
    promoted_from: int | None = Field(default=None, ge=1)


class Costs(Strict):
    llm_tokens: int = Field(default=0, ge=0)
    gpu_seconds: float = Field(default=0.0, ge=0)
    cpu_seconds: float = Field(default=0.0, ge=0)


class Failure(Strict):
    stage: str
    reason: str


class TrainMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")
    loss_curve: list[tuple[float, float | None]] = Field(default_factory=list)
    val_loss: float | None = None


class ExperimentUpdate(Strict):
    """Stage results. Every field is optional; `costs` are added to the stored totals."""

    status: ExperimentStatus | None = None
    program: str | None = Field(default=None, min_length=1)
    motivation: str | None = None
    check: dict[str, Any] | None = None
    train: TrainMetrics | None = None
    eval: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    failure: Failure | None = None
    attempts: list[dict[str, Any]] | None = None
    # Earlier results replaced by a re-evaluation with fresh seeds, kept for the record.
    history: list[dict[str, Any]] | None = None
    # Every program the experiment has had, each with its sha256 and its own description (debugger repairs).
    versions: list[dict[str, Any]] | None = None
    # Why a result too good to believe was held out of the pool and re-run (agent.quarantine).
    quarantine: dict[str, Any] | None = None
    # Speed relative to the seed and peak memory, measured by the evaluator (evaluator.cost).
    cost: dict[str, Any] | None = None
    costs: Costs | None = None


class ExperimentPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    name: str
    status: ExperimentStatus
    parent: int | None = None
    fidelity: Fidelity
    fitness: float | None = None


class ExperimentsPublic(BaseModel):
    data: list[dict[str, Any]]
    count: int


class ExperimentContext(BaseModel):
    parent: dict[str, Any] | None
    grandparent: dict[str, Any] | None
    siblings: list[dict[str, Any]]


class ScoreRequest(Strict):
    judge_score: float | None = Field(default=None, ge=0.0, le=1.0)


class Sample(BaseModel):
    parent: dict[str, Any]
    references: list[dict[str, Any]]
    strategy: str


class JobCreate(Strict):
    kind: JobKind
    experiment: int | None = Field(default=None, ge=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=3, ge=1, le=100)
    timeout: float = Field(default=600.0, gt=0, le=7 * 24 * 3600, description="lease length in seconds")

    @field_validator("payload")
    @classmethod
    def known_fidelity(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """A payload names a known fidelity and valid overrides, or the job would fail in a worker, retried."""
        from trainer.fidelity import get_fidelity

        if "fidelity" in payload or "overrides" in payload:
            overrides = payload.get("overrides") or {}
            if not isinstance(overrides, dict):
                raise ValueError("payload.overrides must be an object of fidelity fields")
            get_fidelity(str(payload.get("fidelity", "smoke")), overrides)  # ValueError names the bad value
        seeds = payload.get("seeds")
        if seeds is not None and not (isinstance(seeds, list) and seeds and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds)):
            raise ValueError("payload.seeds must be a non-empty list of integers in [0, 2^31)")
        return payload


class JobLease(Strict):
    kinds: list[JobKind] = Field(min_length=1)
    worker: str = Field(min_length=1, max_length=200)


class WorkerRef(Strict):
    worker: str = Field(min_length=1, max_length=200)


class JobComplete(WorkerRef):
    result: dict[str, Any] = Field(default_factory=dict)
    next_jobs: list[JobCreate] = Field(default_factory=list, max_length=16)


class JobFail(WorkerRef):
    reason: str = Field(min_length=1)
    retry: bool = True


class JobPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    kind: JobKind
    status: JobStatus
    experiment: int | None
    attempts: int
    max_attempts: int


class JobsPublic(BaseModel):
    data: list[dict[str, Any]]
    count: int


class CognitionEntry(BaseModel):
    """One research insight: our own fields or the published format's upper-case ones."""

    model_config = ConfigDict(extra="allow")
    title: str | None = None
    source: str | None = None
    text: str | None = None

    @field_validator("text")
    @classmethod
    def not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text must not be blank")
        return value


class CognitionCreate(Strict):
    entries: list[CognitionEntry] = Field(min_length=1, max_length=10_000)


class SimilarHit(BaseModel):
    index: int
    name: str
    motivation: str
    score: float


ACTOR_HELP = 'who acts; recorded as "api" when not given'


class ProgramSubmit(Strict):
    """A hand-written program to run as a candidate of the current run."""

    program: str = Field(min_length=1)
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="default: human-<hash of the program>")
    motivation: str | None = None
    parent: int | None = Field(default=None, ge=1)
    fidelity: Fidelity | None = Field(default=None, description="default: the parent's, else the run's first rung")
    actor: str | None = Field(default=None, max_length=200, description=ACTOR_HELP)


class VetoRequest(Strict):
    reason: str = Field(min_length=1, max_length=10_000)
    actor: str | None = Field(default=None, max_length=200, description=ACTOR_HELP)


class ControlRequest(Strict):
    actor: str | None = Field(default=None, max_length=200, description=ACTOR_HELP)
    reason: str | None = Field(default=None, max_length=10_000)


class ControlState(BaseModel):
    paused: bool
    since: str | None
    by: str | None
    reason: str | None


class SteeringAction(BaseModel):
    action: str
    target: int | None
    by: str
    at: str
    detail: dict[str, Any]
