"""The Engineer: checks a candidate by running it, and has it repaired when it fails.

Handles `engineer` jobs. The experiment's program goes through `agent.checks.check_program` (static
checks, then forward/backward, causality, batch independence, parameter budget and cost growth in
a sandboxed child). The report is stored on the experiment. A program that passes goes on to
`train`. One that fails, or one the trainer hands back because it crashed in training (the job's
payload then carries `repair: {stage, error}`), goes to the debugger a bounded number of times;
every attempt is recorded on the experiment. A repaired program that passes replaces the original
and goes on to `train`; when no attempt passes, the candidate fails with the checks' summary.

Settings (environment): ENGINEER_MAX_REPAIRS (2), ENGINEER_TIMEOUT_S (180), ENGINEER_MEMORY_MB (4096).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.checks import check_program, check_summary
from agent.debugger import OfflineFix, debugger_llm, mutation_fix, propose_fix
from agent.llm import BudgetExceeded, LLMOutputError, tokens_used
from database.worker import CandidateError, Outcome
from trainer.checkpoint import sha256
from trainer.fidelity import get_fidelity

log = logging.getLogger("engineer")
ERROR_CHARS = 3000
REASON_CHARS = 1500

__all__ = ["EngineerSettings", "check_summary", "handle_engineer"]


class EngineerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENGINEER_", extra="ignore")

    max_repairs: int = 2
    # CPU seconds per thread the checks may use (a layer too slow to check fails), and a wall-clock backstop
    # for a busy machine (reaching it retries the job; see agent.checks.runner).
    cpu_s: int = 180
    timeout_s: float = 900.0
    memory_mb: int = 4096
    # Shared by every service, so it keeps its own name rather than the ENGINEER_ prefix.
    run_dir: Path = Field(default=Path("runs/default"), validation_alias="RUN_DIR")


def program_version(program: str, description: str | None, author: str) -> dict:
    """One entry of an experiment's `versions`: what a program was, who wrote it and what it was meant to do."""
    return {"sha256": sha256(program), "program": program, "description": description or "", "author": author,
            "at": time.time()}


async def _check(program: str, fidelity, workdir: Path, settings: EngineerSettings) -> dict:
    """The checks in a thread (heartbeats keep running); a cancelled job kills the sandboxed child."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(check_program, program, fidelity, workdir, timeout_s=settings.timeout_s,
                                       cpu_s=settings.cpu_s, memory_mb=settings.memory_mb, stop=stop)
    except asyncio.CancelledError:
        stop.set()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _to_train(job: dict, index: int, result: dict) -> Outcome:
    # The repair request was for this stage only; the trainer keeps counting repairs in `repairs`.
    payload = {k: v for k, v in (job.get("payload") or {}).items() if k != "repair"}
    return Outcome(result, next_jobs=[{"kind": "train", "experiment": index, "payload": payload}])


async def handle_engineer(job: dict, client, *, llm=None, offline_fix: OfflineFix | None = mutation_fix,
                          max_repairs: int | None = None) -> Outcome:
    """Check the experiment's program (or repair it after a training crash); on to `train` when it passes.

    `llm` and `offline_fix` override the debugger's (tests pass scripted ones); `max_repairs` the setting.
    """
    index = job.get("experiment")
    if index is None:
        raise CandidateError("an engineer job needs an experiment")
    settings = EngineerSettings()
    max_repairs = settings.max_repairs if max_repairs is None else max_repairs
    experiment = await client.get_experiment(index)
    payload = job.get("payload") or {}
    fidelity = get_fidelity(payload.get("fidelity") or experiment.get("fidelity") or "smoke", payload.get("overrides"))
    workdir = settings.run_dir.resolve() / "sandbox" / f"engineer-{index}-{job['id'][:8]}"
    program = experiment["program"]
    costs = {"cpu_seconds": 0.0, "llm_tokens": 0}

    async def checked(source: str) -> dict:
        report = await _check(source, fidelity, workdir, settings)
        costs["cpu_seconds"] += report.get("seconds") or 0.0
        return report

    async def store(**fields) -> None:
        # Costs are added to the stored totals, so each update sends only what is new since the last.
        await client.update_experiment(index, costs=dict(costs), **fields)
        costs.update(cpu_seconds=0.0, llm_tokens=0)

    handed_back = payload.get("repair")
    if handed_back:
        stage, error, report = handed_back.get("stage", "train"), str(handed_back.get("error", "")), None
        log.info("experiment %s crashed in %s; repairing", index, stage)
    else:
        report = await checked(program)
        if report["ok"]:
            await store(check=report, status="checked")
            log.info("experiment %s passed its checks: %s", index, check_summary(report).splitlines()[0])
            return _to_train(job, index, {"experiment": index, "ok": True, "summary": check_summary(report)})
        stage, error = "check", check_summary(report)

    # The baseline is the seed by definition: a repaired baseline would measure something else.
    repairs = 0 if experiment.get("is_baseline") else max_repairs
    llm = llm if llm is not None else debugger_llm()
    attempts = list(experiment.get("attempts") or [])
    earlier = len(attempts)
    stopped = ""
    for attempt in range(repairs):
        spender, tokens_before = llm, tokens_used(llm)
        try:
            fix = await propose_fix(program, experiment.get("motivation") or "", error, llm, attempt=attempt,
                                    offline=offline_fix)
        except LLMOutputError as err:
            # No usable fix from the model this time: a failed attempt, not a broken worker.
            attempts.append({"stage": stage, "error": error[-ERROR_CHARS:], "fix": None, "ok": False,
                             "summary": f"the debugger gave no usable fix: {err}"})
            await store(attempts=attempts)
            continue
        except BudgetExceeded as err:
            # The LLM budget is spent: this and later attempts take the offline fix, as with no LLM.
            log.warning("experiment %s: repairing offline from here on: %s", index, err)
            llm, stopped = None, f" (LLM budget spent: {err})"
            fix = await propose_fix(program, experiment.get("motivation") or "", error, None, attempt=attempt,
                                    offline=offline_fix)
        finally:
            costs["llm_tokens"] += tokens_used(spender) - tokens_before
        if fix is None:
            break
        record = {"stage": stage, "error": error[-ERROR_CHARS:], "fix": fix.explanation, "ok": False}
        if fix.program.strip() == program.strip():
            attempts.append({**record, "summary": "the fix returned the program unchanged"})
            await store(attempts=attempts)
            continue
        fixed_report = await checked(fix.program)
        attempts.append({**record, "ok": bool(fixed_report["ok"]), "summary": check_summary(fixed_report)})
        if fixed_report["ok"]:
            versions = [*(experiment.get("versions") or [program_version(experiment["program"],
                                                                         experiment.get("motivation"), "researcher")]),
                        program_version(fix.program, fix.explanation, "debugger")]
            await store(program=fix.program, check=fixed_report, status="checked", attempts=attempts,
                        versions=versions)
            log.info("experiment %s repaired on attempt %d: %s", index, attempt + 1, fix.explanation)
            return _to_train(job, index, {"experiment": index, "ok": True, "repaired": True, "attempts": attempt + 1,
                                          "summary": check_summary(fixed_report)})
        await store(attempts=attempts)
        # The next attempt starts from this one, whose own failure is now the error to fix.
        program, report, stage, error = fix.program, fixed_report, "check", check_summary(fixed_report)

    await store(**({"check": report} if report is not None else {}))
    made = len(attempts) - earlier
    tried = f" after {made} repair attempt{'s' if made != 1 else ''}" if made else ""
    what = "training crashed" if stage == "train" else "the program failed its checks"
    raise CandidateError(f"{what}{tried}{stopped}: {error[:REASON_CHARS]}")
