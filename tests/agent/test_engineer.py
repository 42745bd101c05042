"""The engineer job against a real API: check, store the report, repair with a scripted debugger, or fail.

Broken programs here fail the static checks (milliseconds), so only programs that pass pay for a
sandboxed run; the dynamic failures themselves are covered in test_checks.py.
"""

from __future__ import annotations

import functools

import pytest

from agent.debugger import Fix
from agent.engineer import check_summary, handle_engineer
from agent.llm import BudgetExceeded, LLMOutputError
from database.worker import CandidateError, run_one
from trainer.checkpoint import sha256
from trainer.layers import seed_program

BROKEN = "import os\n" + seed_program()  # a forbidden import: fails in the static checks
SYNTAX_ERROR = seed_program().replace("class DeltaNet(nn.Module):", "class DeltaNet(nn.Module)")


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


async def engineer_job(client, program: str, payload: dict | None = None, **experiment) -> tuple[dict, dict]:
    created = await client.create_experiment(name=experiment.pop("name", "candidate"), program=program,
                                             motivation="a test candidate", **experiment)
    await client.create_job(kind="engineer", experiment=created["index"], payload=payload or {"fidelity": "smoke"})
    job = await client.lease_job(["engineer"], "engineer-test")
    return created, job


def scripted(*programs: str):
    """An offline fix that hands out the given programs in turn, and records what it was asked."""
    asked = []

    def fix(program: str, motivation: str, error: str, attempt: int) -> Fix | None:
        asked.append({"program": program, "error": error, "attempt": attempt})
        if attempt >= len(programs):
            return None
        return Fix(program=programs[attempt], explanation=f"scripted fix {attempt + 1}")

    fix.asked = asked
    return fix


class FakeLLM:
    """The LLM interface the debugger codes against: `structured(messages, model)` and token usage."""

    def __init__(self, program: str):
        self.program, self.messages = program, []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    async def structured(self, messages, model):
        self.messages.append(messages)
        self.usage["prompt_tokens"] += 100
        self.usage["completion_tokens"] += 20
        return model(program=f"```python\n{self.program}\n```", explanation="restored the missing colon")


async def test_a_good_program_is_checked_and_goes_on_to_train(api_client):
    experiment, job = await engineer_job(api_client, seed_program())
    state = await run_one(api_client, job, handle_engineer, "engineer-test")
    assert state == "succeeded"
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["status"] == "checked"
    assert stored["check"]["ok"] and stored["check"]["fidelity"] == "smoke"
    assert stored["attempts"] == []
    assert stored["costs"]["cpu_seconds"] > 0
    train = (await api_client.list_jobs(kind="train"))["data"]
    assert len(train) == 1
    assert train[0]["experiment"] == experiment["index"] and train[0]["payload"] == {"fidelity": "smoke"}
    done = await api_client.get_job(job["id"])
    assert done["result"]["ok"] and done["result"]["summary"].startswith("passed")


async def test_a_broken_program_is_replaced_by_a_fix_that_passes(api_client):
    experiment, job = await engineer_job(api_client, BROKEN)
    fix = scripted(seed_program())
    outcome = await handle_engineer(job, api_client, offline_fix=fix)
    assert outcome.next_jobs == [{"kind": "train", "experiment": experiment["index"], "payload": {"fidelity": "smoke"}}]
    assert outcome.result["repaired"] and outcome.result["attempts"] == 1
    assert "import of 'os' is forbidden" in fix.asked[0]["error"]  # the debugger sees the report
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["status"] == "checked" and stored["program"] == seed_program() and stored["check"]["ok"]
    [attempt] = stored["attempts"]
    assert attempt["stage"] == "check" and attempt["ok"] and attempt["fix"] == "scripted fix 1"
    assert "import of 'os'" in attempt["error"]
    # Both programs are on record, each with its hash and its own description.
    original, repaired = stored["versions"]
    assert original["program"] == BROKEN and original["author"] == "researcher"
    assert repaired["sha256"] == sha256(seed_program()) and repaired["description"] == "scripted fix 1"


async def test_a_program_whose_fixes_fail_is_marked_failed_with_the_reason(api_client):
    experiment, job = await engineer_job(api_client, BROKEN)
    fix = scripted(SYNTAX_ERROR, BROKEN.replace("import os", "import subprocess"), seed_program())
    state = await run_one(api_client, job, functools.partial(handle_engineer, offline_fix=fix), "engineer-test")
    assert state == "failed"
    assert len(fix.asked) == 2  # bounded: the third (good) fix is never asked for
    assert "syntax error" in fix.asked[1]["error"]  # each attempt starts from the previous one's failure
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["status"] == "failed" and stored["failure"]["stage"] == "engineer"
    assert "failed its checks after 2 repair attempts" in stored["failure"]["reason"]
    assert "import of 'subprocess' is forbidden" in stored["failure"]["reason"]
    assert [a["ok"] for a in stored["attempts"]] == [False, False]
    assert stored["program"] == BROKEN  # a failed fix never replaces the program
    assert (await api_client.list_jobs(kind="train"))["count"] == 0


async def test_without_any_fix_a_broken_program_fails_at_once(api_client):
    experiment, job = await engineer_job(api_client, BROKEN)
    with pytest.raises(CandidateError, match="the program failed its checks: failed the static checks"):
        await handle_engineer(job, api_client, offline_fix=None)
    stored = await api_client.get_experiment(experiment["index"])
    assert not stored["check"]["ok"] and stored["attempts"] == []


async def test_a_training_crash_is_repaired_by_the_llm_and_the_repair_request_dropped(api_client):
    payload = {"fidelity": "smoke", "repairs": 1, "repair": {"stage": "train", "error": "RuntimeError: shape boom"}}
    experiment, job = await engineer_job(api_client, SYNTAX_ERROR, payload)
    llm = FakeLLM(seed_program())
    outcome = await handle_engineer(job, api_client, llm=llm)
    # The trainer keeps counting repairs; the request itself is for this stage only.
    assert outcome.next_jobs[0]["payload"] == {"fidelity": "smoke", "repairs": 1}
    assert "RuntimeError: shape boom" in llm.messages[0][-1]["content"]
    stored = await api_client.get_experiment(experiment["index"])
    assert stored["program"] == seed_program()  # the Markdown fence around the answer is gone
    assert stored["attempts"][0]["stage"] == "train" and stored["attempts"][0]["fix"] == "restored the missing colon"
    assert stored["costs"]["llm_tokens"] == 120


class FailingLLM:
    """A debugger model that raises the given LLM errors in turn, then hands out a good program."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    async def structured(self, messages, model):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return model(program=seed_program(), explanation="removed the import")


async def test_an_unusable_fix_is_a_failed_attempt_and_the_next_one_is_tried(api_client):
    experiment, job = await engineer_job(api_client, BROKEN)
    unusable = LLMOutputError("no valid Fix", attempts=3, last_error="program: field required", last_text="{}")
    outcome = await handle_engineer(job, api_client, llm=FailingLLM(unusable))
    assert outcome.result["repaired"] and outcome.result["attempts"] == 2
    stored = await api_client.get_experiment(experiment["index"])
    assert [a["ok"] for a in stored["attempts"]] == [False, True]
    assert "no usable fix" in stored["attempts"][0]["summary"]


async def test_a_spent_llm_budget_hands_repairs_to_the_offline_fix(api_client):
    experiment, job = await engineer_job(api_client, BROKEN)
    llm, fix = FailingLLM(BudgetExceeded("120 tokens of at most 100")), scripted(seed_program())
    outcome = await handle_engineer(job, api_client, llm=llm, offline_fix=fix)
    assert llm.calls == 1 and len(fix.asked) == 1 and outcome.result["repaired"]
    # With no offline fix either, the candidate fails, saying why, and the job is not retried.
    experiment, job = await engineer_job(api_client, BROKEN, name="other")
    llm = FailingLLM(BudgetExceeded("120 tokens of at most 100"))
    handler = functools.partial(handle_engineer, llm=llm, offline_fix=None)
    assert await run_one(api_client, job, handler, "engineer-test") == "failed" and llm.calls == 1
    stored = await api_client.get_experiment(experiment["index"])
    assert "LLM budget spent: 120 tokens of at most 100" in stored["failure"]["reason"]
    assert not stored["check"]["ok"]  # the first check's report is kept


async def test_the_baseline_is_never_repaired(api_client):
    payload = {"fidelity": "smoke", "repair": {"stage": "train", "error": "out of memory"}}
    experiment, job = await engineer_job(api_client, seed_program(), payload, is_baseline=True, origin="seed")
    fix = scripted(seed_program())
    with pytest.raises(CandidateError, match="training crashed: out of memory"):
        await handle_engineer(job, api_client, offline_fix=fix)
    assert fix.asked == []


def test_check_summary_and_fences():
    report = {"ok": False, "static": {"errors": [], "warnings": []}, "reason": None,
              "checks": [{"name": "causality", "ok": False, "hard": True, "detail": "reads the future"},
                         {"name": "cost_growth", "ok": False, "hard": False, "warning": True, "detail": "T^2.0"}]}
    assert check_summary(report) == "failed causality:\n- causality: reads the future\nflagged cost_growth: T^2.0"
    assert Fix(program="```python\nx = 1\n```", explanation="e").program == "x = 1\n"
    assert Fix(program="```Python3\nx = 1\n```", explanation="e").program == "x = 1\n"
    assert Fix(program="x = 1", explanation="e").program == "x = 1"
