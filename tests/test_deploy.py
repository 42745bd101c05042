"""The deployment files agree with the code: compose parses, and every service command exists."""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(compose_command() is None, reason="neither `docker compose` nor `docker-compose` is installed")
def test_compose_config_passes_and_requires_the_token():
    command = compose_command()
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN"}
    ok = subprocess.run([*command, "config", "-q"], cwd=ROOT, env={**env, "API_TOKEN": "t"}, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run([*command, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "API_TOKEN" in missing.stderr


def test_every_service_command_names_an_existing_module():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    assert {"mongo", "api", "researcher", "engineer", "analyst", "trainer", "evaluator"} <= set(services)
    for name, service in services.items():
        if name == "mongo":
            assert service["image"].startswith("mongo") and "healthcheck" in service
            continue
        command = service.get("command")
        assert command[:2] == ["python", "-m"], name
        assert importlib.util.find_spec(command[2]) is not None, f"{name}: module {command[2]} is missing"
        assert "healthcheck" in service, name
    assert services["api"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    gpu = services["trainer"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
