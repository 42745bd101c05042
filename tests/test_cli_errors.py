"""Every command-line entry point answers a user's mistake with one readable line, never a traceback.

Each case runs the module as a new user would (`python -m ...`) with one bad argument, and checks the
exit status is non-zero, the output is a single line that names the bad value, and no Python traceback
shows. Entry points that do not exist yet in this tree are skipped ("not present").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = "trainer/programs/seed_deltanet.py"
MISSING_PROGRAM = "does/not/exist.py"
MISSING_DIR = "does/not/exist"

# (module, arguments, the bad value the message must name); "{tmp}" is a scratch directory.
CASES = [
    ("trainer.train", ["--fidelity", "nonsense", "--program", SEED, "--out", "{tmp}/out"], "nonsense"),
    ("trainer.train", ["--program", MISSING_PROGRAM, "--out", "{tmp}/out"], MISSING_PROGRAM),
    ("trainer.train", ["--program", SEED, "--out", "{tmp}/out", "--set", "steps=many"], "many"),
    ("trainer.train", ["--program", SEED, "--out", "{tmp}/out", "--device", "gpu0"], "gpu0"),
    ("evaluator.evaluate", ["--checkpoint", MISSING_DIR], MISSING_DIR),
    ("evaluator.evaluate", ["--tier", "nonsense", "--checkpoint", MISSING_DIR], "nonsense"),
    ("evaluator.evaluate", ["--tasks", "nonsense", "--checkpoint", MISSING_DIR], "nonsense"),
    ("agent.pipeline", ["--fidelity", "nonsense", "--run-dir", "{tmp}/run"], "nonsense"),
    ("agent.pipeline", ["--ladder", "synthetic,nonsense", "--run-dir", "{tmp}/run"], "nonsense"),
    ("agent.pipeline", ["--parallel", "0", "--run-dir", "{tmp}/run"], "0"),
    ("agent.pipeline", ["--set", "nonsense=1", "--run-dir", "{tmp}/run"], "nonsense"),
    ("agent.pipeline", ["--program", MISSING_PROGRAM, "--run-dir", "{tmp}/run"], MISSING_PROGRAM),
    ("agent.calibrate", ["--fidelity", "nonsense"], "nonsense"),
    ("agent.calibrate", ["--fidelity", "smoke", "--programs", MISSING_DIR], MISSING_DIR),
    ("agent.trial", [MISSING_PROGRAM], MISSING_PROGRAM),
    ("agent.trial", [SEED, "--fidelity", "nonsense"], "nonsense"),
    ("agent.report", ["compare", MISSING_DIR, "{tmp}"], MISSING_DIR),
    ("agent.report", ["nonsense"], "nonsense"),
    # Written elsewhere; checked here once they exist.
    ("agent.launch", ["slurm", "--role", "nonsense", "--dry-run"], "nonsense"),
    ("trainer.export", ["--checkpoint", MISSING_DIR, "--out", "{tmp}/hf"], MISSING_DIR),
    ("evaluator.generate", ["--checkpoint", MISSING_DIR, "--prompt", "hello"], MISSING_DIR),
]


def module_file(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


@pytest.mark.parametrize(("module", "arguments", "bad"), CASES,
                         ids=[f"{m}:{' '.join(a)[:40]}" for m, a, _ in CASES])
def test_a_bad_argument_gets_one_readable_line(module, arguments, bad, tmp_path):
    if not module_file(module).exists():
        pytest.skip("not present")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    env = {**os.environ, "RUN_DIR": str(tmp_path / "run"), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    assert len(lines) == 1, output
    assert bad in lines[0], output
