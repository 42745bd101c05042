"""The README's commands work when pasted."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_quick_start_gives_exactly_the_two_commands_and_ci_runs_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in bash_blocks()[0].splitlines() if line.strip()]
    assert "```bash" in quick and commands == ["make run", "make test"]
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "-m agent.pipeline" in makefile.split("run: install", 1)[1].split("\n\n", 1)[0]


def test_api_curl_examples_run_against_a_live_api(start_api):
    api = start_api()
    block = next(b for b in bash_blocks() if "curl -s $API/health" in b)
    script = block.replace("export API=http://127.0.0.1:8000 API_TOKEN=dev-token",
                           f"export API={api.url} API_TOKEN={api.token}")
    # Each command must succeed (-f: HTTP errors fail) except the pool sample, empty until a baseline exists.
    script = "set -e\n" + script.replace("curl -s ", "curl -sf ").replace(
        'curl -sf "$API/candidates/sample?strategy=uct"', 'curl -s "$API/candidates/sample?strategy=uct"')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status":"ok"' in done.stdout and '"index":1' in done.stdout and "pool is empty" in done.stdout


def test_train_by_hand_command_trains_the_seed(tmp_path):
    block = next(b for b in bash_blocks() if "-m trainer.train" in b)
    command = block.strip().replace(".venv/bin/python", sys.executable).replace("trainer/programs",
                                                                              str(ROOT / "trainer/programs"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUN_DIR": str(tmp_path / "run")}
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["status"] == "ok" and summary["val_loss"] < summary["val_loss_start"] - 1.0
    assert (tmp_path / "runs/try/checkpoint/model.safetensors").exists()

    # Then the evaluation commands, on the checkpoint it wrote.
    block = next(b for b in bash_blocks() if "-m evaluator.evaluate" in b)
    done = subprocess.run(["bash", "-ec", block.replace(".venv/bin/python", sys.executable)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    scores = json.loads((tmp_path / "runs/try/scores.json").read_text())
    assert {"arc_easy", "hellaswag", "piqa", "recall_mqar", "recall_kv", "wiki_perplexity"} <= set(scores["tasks"])
    assert "recall_kv" in done.stdout and "arc_easy" in done.stdout  # lm-eval's own results table


def test_llm_settings_from_the_readme_configure_every_role(monkeypatch, tmp_path):
    from agent.llm import OpenAIChat, get_llm

    block = next(b for b in bash_blocks() if "LLM_BASE_URL=" in b)
    exports = [line.split("#")[0].split()[1:] for line in block.splitlines() if line.startswith("export ")]
    for name in [n for n in os.environ if n.startswith("LLM_")]:
        monkeypatch.delenv(name)
    for assignment in (a for line in exports for a in line):
        name, value = assignment.split("=", 1)
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env file of a developer's in the way
    researcher, judge = get_llm("researcher"), get_llm("judge")
    assert isinstance(researcher, OpenAIChat) and researcher.url == "http://127.0.0.1:8080/v1/chat/completions"
    assert (researcher.model, judge.model) == ("qwen2.5-coder-32b-instruct", "gpt-4o-mini")
    assert researcher.budget.max_tokens == 2_000_000 and researcher.budget is judge.budget


def test_every_project_file_a_readme_command_names_exists():
    named = {path for block in re.findall(r"```(?:bash|text|sh)?\n(.*?)```", README, flags=re.S)
             for path in re.findall(r"(?<![\w/.-])([\w.-]+(?:/[\w.-]+)+\.py)\b", block)}
    assert "benchmarks/published_smoke.py" in named  # the pattern finds what it should
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []
