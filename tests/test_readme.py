"""The README's commands work when pasted."""

import re
import subprocess
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
