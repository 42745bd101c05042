"""Schemathesis over the published OpenAPI schema, with the token, against a live API: no response is a 5xx.

Bounded in time (`--max-time`) and seeded, so that CI repeats the same run; the API stores what it
accepts in the embedded database as it would in production.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(400)
def test_no_generated_request_gets_a_server_error(start_api, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is in requirements.txt: its `st` command must be installed beside python"
    api = start_api()
    done = subprocess.run(
        [st, "run", f"{api.url}/openapi.json", "--checks", "not_a_server_error", "--header",
         f"Authorization: Bearer {api.token}", "--max-examples", "15", "--max-time", "90", "--seed", "7",
         "--request-timeout", "20", "--workers", "1"],
        capture_output=True, text=True, timeout=360, cwd=tmp_path)
    report = done.stdout + done.stderr
    assert "Tested: " in report, report[-3000:]
    assert done.returncode == 0 and "Server error" not in report, report[-5000:]
