"""The Analyst: scores an evaluated experiment against the baseline and writes what was learned.

Handles `analyse` jobs. Fitness is computed by the API (relative to the baseline of the same
fidelity; see database/fitness.py). With an LLM, a judge scores the design on a rubric anchored on
the baseline, and the analysis is written in five parts (design evaluation, results, expectation vs
reality, explanation, synthesis) plus a short experience summary that later prompts use. Offline,
the analysis is written from the numbers and the judge's weight is 0 (its score is None), so fitness
rests on loss and benchmarks alone.
"""

from __future__ import annotations

import logging
import os

from pydantic import BaseModel, Field

from agent import prompts
from agent.llm import BudgetExceeded, get_llm, tokens_used
from agent.quarantine import rerun_job, suspicion
from database.worker import CandidateError, Outcome

log = logging.getLogger("analyst")
# Relative loss improvement over the baseline beyond which a result is re-run before it may enter the pool.
QUARANTINE_MARGIN = float(os.environ.get("QUARANTINE_MARGIN", "0.1"))


class JudgeVerdict(BaseModel):
    score: float = Field(ge=0.0, le=1.0)
    rationale: str


class Analysis(BaseModel):
    design_evaluation: str
    results: str
    expectation_vs_reality: str
    explanation: str
    synthesis: str
    summary: str = Field(min_length=10)


def relative(value: float | None, reference: float | None, lower_is_better: bool = False) -> float | None:
    if value is None or reference in (None, 0):
        return None
    change = (value - reference) / abs(reference)
    return -change if lower_is_better else change


def measured_deltas(experiment: dict, baseline: dict) -> dict:
    """Improvements over the baseline (positive is better), task by task."""
    train, base_train = experiment.get("train") or {}, baseline.get("train") or {}
    evaluation, base_eval = experiment.get("eval") or {}, baseline.get("eval") or {}
    tasks = {}
    for name, score in (evaluation.get("tasks") or {}).items():
        base = (base_eval.get("tasks") or {}).get(name)
        if base and score.get("value") is not None and base.get("value") is not None:
            lower = "perplexity" in score.get("metric", "") or score.get("metric") in ("ppl", "word_perplexity")
            tasks[name] = round(-(score["value"] - base["value"]) if lower else score["value"] - base["value"], 4)
    return {
        "val_loss": train.get("val_loss"), "baseline_val_loss": base_train.get("val_loss"),
        "loss_improvement": relative(train.get("val_loss"), base_train.get("val_loss"), lower_is_better=True),
        "benchmark_average_delta": _delta(evaluation.get("average"), base_eval.get("average")),
        "recall_delta": _delta(evaluation.get("recall"), base_eval.get("recall")),
        "task_deltas": tasks,
        "speed_ratio": _ratio(train.get("tokens_per_s"), base_train.get("tokens_per_s")),
        "params_ratio": _ratio(train.get("non_embedding_params"), base_train.get("non_embedding_params")),
    }


def _delta(a, b):
    return None if a is None or b is None else round(a - b, 4)


def _ratio(a, b):
    return None if not a or not b else round(a / b, 3)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def numbers_analysis(experiment: dict, baseline: dict, numbers: dict) -> Analysis:
    """The five-part analysis written from the measurements alone (no LLM)."""
    loss = numbers["loss_improvement"]
    verdict = ("improves on" if (loss or 0) > 0.005 else "falls behind" if (loss or 0) < -0.005 else "matches")
    ranked = sorted(numbers["task_deltas"].items(), key=lambda kv: kv[1])
    worst = ", ".join(f"{k} {v:+.3f}" for k, v in ranked[:2]) or "none"
    best = ", ".join(f"{k} {v:+.3f}" for k, v in ranked[::-1][:2]) or "none"
    speed, params = numbers["speed_ratio"], numbers["params_ratio"]
    is_baseline = experiment["index"] == baseline["index"]
    results = (f"Validation loss {numbers['val_loss']:.4f} vs the baseline's {numbers['baseline_val_loss']:.4f} "
               f"({_pct(loss)}); benchmark average {_signed(numbers['benchmark_average_delta'])}, recall "
               f"{_signed(numbers['recall_delta'])}. Best tasks: {best}. Worst tasks: {worst}. Throughput "
               f"{speed}x and non-embedding parameters {params}x the baseline's.")
    if is_baseline:
        summary = f"Baseline: validation loss {numbers['val_loss']:.4f}; every candidate is measured against it."
    else:
        summary = (f"{experiment['name']} {verdict} the baseline: loss {_pct(loss)}, recall "
                   f"{_signed(numbers['recall_delta'])}, benchmarks {_signed(numbers['benchmark_average_delta'])}, "
                   f"speed {speed}x.")
    motivation = (experiment.get("motivation") or "").split(". ")[0]
    return Analysis(
        design_evaluation=f"Design: {motivation}.",
        results=results,
        expectation_vs_reality=(f"The motivation expected an improvement; the measured loss change is {_pct(loss)} "
                                f"and the recall change {_signed(numbers['recall_delta'])}."),
        explanation=("Computed from the numbers only, without an LLM: differences under about 0.5% of the loss "
                     "are within run-to-run noise at this fidelity."),
        synthesis=(f"{'Keep exploring around this design.' if verdict == 'improves on' else 'Prefer other parents.'} "
                   f"Cost: {speed}x speed, {params}x parameters."),
        summary=summary,
    )


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.4f}"


async def hold_if_suspect(experiment: dict, baseline: dict, job: dict, client) -> Outcome | None:
    """Quarantine a result too good to believe (agent.quarantine): out of the pool, re-run with fresh seeds.

    A re-run experiment is scored on its new numbers; its record keeps the first result and the reason.
    """
    record = experiment.get("quarantine") or {}
    if record.get("rerun"):
        if "cleared_val_loss" not in record:
            await client.update_experiment(experiment["index"], quarantine={
                **record, "cleared_val_loss": (experiment.get("train") or {}).get("val_loss")})
        return None
    calibration = (await client.calibrations()).get(experiment["fidelity"])
    reason = suspicion(experiment, baseline, calibration, margin=QUARANTINE_MARGIN)
    if reason is None:
        return None
    payload = dict(job.get("payload") or {})
    first = {key: (experiment.get("train") or {}).get(key) for key in ("val_loss", "val_loss_stats", "seeds")}
    await client.update_experiment(experiment["index"], status="quarantined",
                                   quarantine={"reason": reason, "first": first, "rerun": True})
    log.warning("quarantined #%s: %s; re-running it with fresh seeds", experiment["index"], reason)
    replicates = len(first.get("seeds") or []) or 1
    return Outcome({"experiment": experiment["index"], "quarantined": reason},
                   next_jobs=[rerun_job(experiment, payload, replicates)])


async def handle_analyse(job: dict, client, *, llm=None, judge=None) -> Outcome:
    index = job["experiment"]
    experiment = await client.get_experiment(index)
    baseline = await client.baseline(experiment["fidelity"])
    if baseline is None:
        raise CandidateError(f"no baseline at fidelity {experiment['fidelity']!r} to compare with")
    if baseline.get("train") is None or baseline.get("eval") is None:
        if baseline["index"] != index:
            raise RuntimeError(f"the baseline #{baseline['index']} is not evaluated yet")
    if not (experiment.get("train") or {}).get("val_loss") or experiment.get("eval") is None:
        raise CandidateError("the experiment has no training or evaluation results to analyse")
    held = await hold_if_suspect(experiment, baseline, job, client)
    if held is not None:
        return held
    llm = llm if llm is not None else get_llm("analyst")
    judge = judge if judge is not None else (get_llm("judge") or llm)
    numbers = measured_deltas(experiment, baseline)
    usage_before = tokens_used(llm) + (tokens_used(judge) if judge is not llm else 0)
    judge_score, analysis = None, None
    # A spent LLM budget must not cost a trained and evaluated candidate its fitness: score it as offline
    # (no judge, the analysis from the numbers).
    try:
        if judge is not None and baseline["index"] != index:
            verdict = await judge.structured(prompts.judge_messages(experiment, baseline), JudgeVerdict)
            judge_score = verdict.score
        if llm is not None:
            parent = await client.get_experiment(experiment["parent"]) if experiment.get("parent") is not None else None
            analysis = await llm.structured(prompts.analysis_messages(experiment, baseline, parent, numbers), Analysis)
    except BudgetExceeded as err:
        log.warning("analysing #%s without the LLM from here on: %s", index, err)
    analysis = analysis or numbers_analysis(experiment, baseline, numbers)
    text = "\n\n".join(f"{title}: {getattr(analysis, key)}" for key, title in (
        ("design_evaluation", "Design evaluation"), ("results", "Results"),
        ("expectation_vs_reality", "Expectation vs reality"), ("explanation", "Explanation"),
        ("synthesis", "Synthesis")))
    tokens = tokens_used(llm) + (tokens_used(judge) if judge is not llm else 0) - usage_before
    await client.update_experiment(
        index, status="analysed", costs={"llm_tokens": tokens},
        analysis={**analysis.model_dump(), "text": text, "judge_score": judge_score, "numbers": numbers},
    )
    scored = await client.score_experiment(index, judge_score)
    log.info("analysed #%s: fitness %s", index, scored.get("fitness"))
    return Outcome({"experiment": index, "fitness": scored.get("fitness")}, next_jobs=[])

