"""`python -m agent.pipeline` end to end, embedded, with a scripted LLM in every role.

The real pipeline: the API with its embedded database and one worker process per role, the
sandboxed checks, training, lm-eval and analysis. Only the model is scripted, role by role
(LLM_SCRIPT as an object of reply lists), so that the run takes a known path:

- the baseline (the seed) is checked, trained, evaluated and analysed by the scripted analyst;
- the researcher's first reply is prose (asked again), then SEARCH/REPLACE edits adding a sequence
  mean to the output: non-causal, and the debugger's fix still is, so the candidate is rejected;
- the next design gates the output with a layer of the wrong width: it crashes in its checks, the
  debugger fixes the width, and the repaired candidate is trained, evaluated, judged and scored.

A role that made a call the script does not expect would fail its job, and the run with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.database.dashboard_browser import browser_available, check_every_page
from trainer.layers import seed_program

ROOT = Path(__file__).resolve().parents[1]
FAST = ["steps=40", "eval_batches=2", "eval_every=20", "replicates=1"]
OUTPUT_LINE = '        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))\n'
PROJECTION_LINE = "        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)\n"


def gated(width: str) -> str:
    program = seed_program()
    assert OUTPUT_LINE in program and PROJECTION_LINE in program
    program = program.replace(PROJECTION_LINE, PROJECTION_LINE +
                              f"        self.out_gate = nn.Linear(hidden_size, {width}, bias=False)\n")
    return program.replace(OUTPUT_LINE, OUTPUT_LINE + "        o = o * torch.sigmoid(self.out_gate(hidden_states))\n")


def analysis(summary: str) -> dict:
    return {"design_evaluation": "A small change to the output path.", "results": "Measured at smoke scale.",
            "expectation_vs_reality": "As expected at this scale.", "explanation": "Too small a run to tell.",
            "synthesis": "Try it at a larger scale.", "summary": summary}


def script() -> dict:
    mean_context = {
        "name": "sequence-mean-context",
        "motivation": "Adding the mean of the whole output sequence gives every position a global summary "
                      "of the context at no extra parameter cost.",
        "edits": [{"search": OUTPUT_LINE, "replace": OUTPUT_LINE + "        o = o + o.mean(dim=1, keepdim=True)\n"}],
    }
    wrong_gate = {
        "name": "sigmoid-output-gate",
        "motivation": "A sigmoid gate computed from the block input scales each output channel, letting the "
                      "layer suppress memory reads that do not fit the current token.",
        "program": gated("hidden_size // 3"),
    }
    still_global = seed_program().replace(OUTPUT_LINE, OUTPUT_LINE + "        o = o + o.flip(1)\n")
    return {
        "researcher": ["I would add a global context path to the output.", mean_context, wrong_gate],
        "engineer": [
            {"program": still_global, "explanation": "used the reversed sequence instead of its mean"},
            {"program": gated("hidden_size"), "explanation": "the gate must be as wide as the output"},
        ],
        "analyst": [analysis("Baseline: the seed DeltaNet."), analysis("The output gate trains like the seed.")],
        "judge": [{"score": 0.75, "rationale": "a sound, cheap gate"}],
    }


@pytest.mark.timeout(900)
def test_a_scripted_run_rejects_one_candidate_and_repairs_another(tmp_path, start_api):
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps(script()))
    run_dir = tmp_path / "run"
    env = {**os.environ, "LLM_PROVIDER": "scripted", "LLM_SCRIPT": str(script_file), "ENGINEER_MAX_REPAIRS": "1",
           "RUN_DIR": str(run_dir)}
    done = subprocess.run([sys.executable, "-m", "agent.pipeline", "--experiments", "1", "--run-dir", str(run_dir),
                           "--fidelity", "smoke", "--set", *FAST], cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    # Read back through a fresh API on the run's embedded data file.
    api = start_api(run_dir=run_dir)
    listed = httpx.get(f"{api.url}/experiments", params={"limit": 100}, timeout=10).json()["data"]
    baseline, rejected, repaired = sorted(listed, key=lambda e: e["index"])
    assert baseline["is_baseline"] and baseline["status"] == "analysed" and baseline["fitness"] is not None
    assert baseline["analysis"]["summary"] == "Baseline: the seed DeltaNet."

    # Rejected: the edits applied, the checks found the future leaking in, the one repair did not help.
    assert rejected["name"] == "sequence-mean-context" and rejected["origin"] == "llm"
    assert "o.mean(dim=1, keepdim=True)" in rejected["program"]
    assert rejected["status"] == "failed" and rejected["failure"]["stage"] == "engineer"
    assert "causality" in rejected["failure"]["reason"], rejected["failure"]
    assert [a["ok"] for a in rejected["attempts"]] == [False]
    assert rejected.get("fitness") is None

    # Repaired: the gate's width was fixed and the repaired program is what was trained and scored.
    assert repaired["name"] == "sigmoid-output-gate" and repaired["parent"] == baseline["index"]
    assert [a["ok"] for a in repaired["attempts"]] == [True]
    assert "the gate must be as wide" in repaired["attempts"][0]["fix"]
    assert "nn.Linear(hidden_size, hidden_size, bias=False)" in repaired["program"]
    assert repaired["status"] == "analysed" and repaired["check"]["ok"]
    assert repaired["train"]["val_loss"] < repaired["train"]["val_loss_start"]
    assert repaired["train"]["seeds"] == baseline["train"]["seeds"]  # the same data order as the baseline's
    assert repaired["eval"]["tasks"] and repaired["eval"]["recall"] is not None
    assert repaired["analysis"]["judge_score"] == 0.75
    assert repaired["analysis"]["summary"] == "The output gate trains like the seed."
    assert 0.0 < repaired["fitness"] < 1.0 and repaired["costs"]["llm_tokens"] > 0

    # The results table names all three, the rejected one with its stage.
    for name in ("seed-deltanet-smoke", "sequence-mean-context", "sigmoid-output-gate", "failed@engineer"):
        assert name in done.stdout, done.stdout[-3000:]
    assert (run_dir / "plots" / "lineage.png").exists()

    # The dashboard's address was printed, and every page of the finished run draws its data in a browser.
    assert "dashboard: http://127.0.0.1:" in done.stdout
    if browser_available():
        check_every_page(api.url, Path(os.environ.get("DASHBOARD_SHOTS") or tmp_path / "shots"), "embedded-run")

