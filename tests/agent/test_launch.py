"""`python -m agent.launch slurm`: the sbatch script it writes and the errors it gives, without SLURM."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.launch import main
from agent.sbatch import SlurmJob, lease_margin_s, parse_time, render, slurm_time, term_lead_s

ROOT = Path(__file__).resolve().parents[2]


def job(**changes) -> SlurmJob:
    fields = dict(role="trainer", count=4, api_url="http://api.example:8000", run_dir=Path("/shared/run"),
                  project=Path("/opt/project"), python="/opt/venv/bin/python", gpus_per_job=2, cpus_per_task=8,
                  partition="gpu", time_s=4 * 3600)
    return SlurmJob(**{**fields, **changes})


def test_slurm_times():
    assert [parse_time(t) for t in ("30", "30:15", "4:00:00", "1-0", "1-2:30", "1-02:30:05")] == \
        [1800, 1815, 14400, 86400, 95400, 95405]
    for bad in ("", "1h", "4:00:00:00", "-5"):
        with pytest.raises(ValueError, match="not a SLURM time; use MINUTES"):
            parse_time(bad)
    with pytest.raises(ValueError, match="zero"):
        parse_time("0")
    assert slurm_time(14400) == "04:00:00" and slurm_time(95405) == "1-02:30:05"
    # Short jobs still stop leasing before the SIGTERM comes, which comes before the kill.
    assert term_lead_s(600) == 30 and lease_margin_s(600) == 60
    assert term_lead_s(14400) == 120 and lease_margin_s(14400) == 900


def test_the_script_is_a_job_array_of_the_roles_entry_point_without_the_token(monkeypatch):
    monkeypatch.setenv("API_TOKEN_FOR_TEST", "s3cret-token")
    script = render(job(token_env="API_TOKEN_FOR_TEST"))
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=0-3", "#SBATCH --gres=gpu:2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --partition=gpu", "#SBATCH --time=04:00:00", "#SBATCH --signal=B:TERM@120",
                 "#SBATCH --export=ALL", "#SBATCH --output=/shared/run/logs/slurm/%x-%A_%a.out",
                 'export API_TOKEN="${API_TOKEN_FOR_TEST}"', "export API_URL=http://api.example:8000",
                 "export RUN_DIR=/shared/run", "export WORKER_LEASE_MARGIN_S=900",
                 "export WORKER_STOP_LEASING_AFTER_S=13500", "cd /opt/project",
                 'exec "${PYTHON:-/opt/venv/bin/python}" -m trainer.worker'):
        assert line in script.splitlines(), line
    assert "s3cret" not in script
    # sbatch reads directives only before the first command.
    lines = script.splitlines()
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("role, module", [("engineer", "-m agent.worker --role engineer"),
                                          ("evaluator", "-m evaluator.worker"),
                                          ("analyst", "-m agent.worker --role analyst")])
def test_every_role_runs_its_own_worker(role, module):
    script = render(job(role=role, gpus_per_job=0, partition=None, time_s=None, cpus_per_task=None))
    assert script.rstrip().endswith(module)
    assert "--gres" not in script and "--partition" not in script and "--time" not in script
    assert "WORKER_STOP_LEASING_AFTER_S" not in script and "TRAINER_THREADS" not in script


def test_dry_run_writes_the_script_and_prints_its_path(tmp_path, capsys):
    out = tmp_path / "workers.sbatch"
    code = main(["slurm", "--role", "evaluator", "--count", "3", "--gpus-per-job", "1", "--time", "90",
                 "--run-dir", str(tmp_path / "run"), "--api", "http://head:8000", "--dry-run", "--out", str(out)])
    assert code == 0 and capsys.readouterr().out.strip() == f"wrote {out}"
    script = out.read_text()
    assert "#SBATCH --array=0-2" in script and "EVALUATOR_DEVICE" in script and os.access(out, os.X_OK)
    assert (tmp_path / "run" / "logs" / "slurm").is_dir()  # sbatch does not make the log folder


def launch(*args, env=None):
    return subprocess.run([sys.executable, "-m", "agent.launch", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.parametrize("args, names", [
    (["--role", "cook"], ["'cook'", "trainer", "evaluator", "researcher"]),
    (["--role", "trainer", "--count", "0"], ["--count", "'0'", "at least 1"]),
    (["--role", "trainer", "--gpus-per-job", "-1"], ["--gpus-per-job", "'-1'"]),
    (["--role", "trainer", "--time", "1h"], ["'1h'", "HOURS:MINUTES:SECONDS"]),
    (["--role", "trainer", "--partition", "gpu;rm"], ["'gpu;rm'", "letters"]),
    (["--role", "trainer", "--api", "api:8000"], ["'api:8000'", "http://"]),
    (["--role", "trainer", "--token-env", "MY-TOKEN"], ["'MY-TOKEN'", "environment variable"]),
])
def test_bad_arguments_are_one_line_naming_the_value(args, names, tmp_path):
    done = launch("slurm", *args, "--run-dir", str(tmp_path), "--dry-run")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    for name in names:
        assert name in done.stderr, done.stderr


def test_missing_sbatch_or_token_is_one_clear_line(tmp_path):
    args = ["slurm", "--role", "trainer", "--run-dir", str(tmp_path)]
    done = launch(*args, env={"PATH": str(tmp_path), "API_TOKEN": "t"})
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "sbatch is not on PATH" in done.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/sh\necho 4242\n")
    (fake / "sbatch").chmod(0o755)
    path = f"{fake}{os.pathsep}{os.environ['PATH']}"
    done = launch(*args, env={"PATH": path, "API_TOKEN": ""})
    assert done.returncode == 2 and "API_TOKEN is empty" in done.stderr
    done = launch(*args, "--api", "http://head:8000", env={"PATH": path, "API_TOKEN": "t"})
    assert done.returncode == 0, done.stderr
    assert "submitted job 4242: 1 trainer worker(s)" in done.stdout and "wrote " in done.stdout


def test_the_roles_are_compose_services_with_the_same_entry_point():
    import yaml

    from agent.cluster import WORKERS

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for role, module in WORKERS.items():
        assert services[role]["command"] == ["python", "-m", *module], role
        assert render(job(role=role)).rstrip().endswith(" ".join(["-m", *module]))


def test_workers_per_gpu_shares_each_tasks_gpu_and_splits_its_cpus():
    shared = render(job(role="trainer", workers_per_gpu=4, cpus_per_task=8))
    assert "export TRAINER_WORKERS_PER_GPU=4" in shared
    threads = next(line for line in shared.splitlines() if "TRAINER_THREADS" in line and "export" in line)
    result = subprocess.run(["bash", "-c", f"{threads}\necho $TRAINER_THREADS"], env={"SLURM_CPUS_PER_TASK": "8"},
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "2"
    assert "TRAINER_WORKERS_PER_GPU" not in render(job(role="trainer"))
