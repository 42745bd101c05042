"""Workers on a cluster scheduler: `python -m agent.launch slurm --role trainer --count 8 --gpus-per-job 1`.

    python -m agent.launch slurm --role trainer --count N --gpus-per-job G [--partition P] [--time T]
        [--cpus-per-task C] [--api URL] [--token-env NAME] [--run-dir DIR] [--dry-run] [--out SCRIPT]

Writes an sbatch script (a job array, one worker per task; see agent.sbatch), prints its path and
submits it with `sbatch`, which prints the job id. The workers lease from the candidate API at
--api with the bearer token found in the environment variable --token-env (API_TOKEN by default)
when sbatch runs; the script never holds the token. --dry-run only writes the script.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from agent.sbatch import ROLES, SlurmJob, parse_time, render
from trainer.cli import Parser, whole_number

ROOT = Path(__file__).resolve().parents[1]
_PARTITION = re.compile(r"^[A-Za-z0-9_.,-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LaunchError(Exception):
    """A one-line reason to stop, shown without a traceback."""


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m agent.launch", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    engines = parser.add_subparsers(dest="engine", required=True, metavar="{slurm}")
    slurm = engines.add_parser("slurm", help="submit workers as a SLURM job array")
    slurm.add_argument("--role", required=True, choices=ROLES, help="which worker each task runs")
    slurm.add_argument("--count", type=whole_number(1), default=1, help="workers (array tasks)")
    slurm.add_argument("--gpus-per-job", type=whole_number(0), default=None,
                       help="GPUs per worker (default 1 for the trainer, 0 for the other roles)")
    slurm.add_argument("--cpus-per-task", type=whole_number(1), default=None)
    slurm.add_argument("--workers-per-gpu", type=whole_number(1), default=1,
                       help="trainer workers sharing each task's GPU, each with 1/K of its memory (default 1)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", type=_time, default=None, dest="time_s",
                       help="time limit per worker, in SLURM's format (e.g. 4:00:00 or 1-00:00:00)")
    slurm.add_argument("--stop-leasing-before", type=whole_number(0), default=None,
                       help="seconds before the limit at which workers take no new job (default: a tenth "
                            "of --time, between 1 and 15 minutes)")
    slurm.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"),
                       help="the candidate API, as reachable from the compute nodes")
    slurm.add_argument("--token-env", default="API_TOKEN",
                       help="environment variable that holds the API token when sbatch runs")
    slurm.add_argument("--run-dir", type=Path, default=Path(os.environ.get("RUN_DIR", "runs/default")),
                       help="run directory on a filesystem shared with the API and the other roles")
    slurm.add_argument("--out", type=Path, default=None, help="where to write the script")
    slurm.add_argument("--dry-run", action="store_true", help="write the script, do not submit it")
    return parser


def check(args: argparse.Namespace) -> None:
    if args.partition is not None and not _PARTITION.match(args.partition):
        raise LaunchError(f"--partition {args.partition!r} is not a partition name (letters, digits, _ . , -)")
    if not _ENV_NAME.match(args.token_env):
        raise LaunchError(f"--token-env {args.token_env!r} is not an environment variable name")
    url = urlparse(args.api)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise LaunchError(f"--api {args.api!r} is not an http:// or https:// URL")


def job_of(args: argparse.Namespace) -> SlurmJob:
    gpus = args.gpus_per_job if args.gpus_per_job is not None else int(args.role == "trainer")
    return SlurmJob(role=args.role, count=args.count, api_url=args.api, run_dir=args.run_dir.resolve(),
                    project=ROOT, python=sys.executable, gpus_per_job=gpus, cpus_per_task=args.cpus_per_task,
                    partition=args.partition, time_s=args.time_s, token_env=args.token_env,
                    stop_leasing_before_s=args.stop_leasing_before, workers_per_gpu=args.workers_per_gpu)


def write_script(job: SlurmJob, out: Path | None) -> Path:
    path = out or job.run_dir / "slurm" / f"{job.role}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    (job.log_dir or job.run_dir / "logs" / "slurm").mkdir(parents=True, exist_ok=True)  # sbatch won't make it
    path.write_text(render(job))
    path.chmod(0o755)
    return path


def sbatch_or_fail(token_env: str) -> str:
    """Checked before anything is written: what submitting needs besides the script."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise LaunchError("sbatch is not on PATH: run this where SLURM's commands are installed (a login node); "
                          "--dry-run only writes the script")
    if not os.environ.get(token_env):
        raise LaunchError(f"the environment variable {token_env} is empty: export the API token in it "
                          f"(the script reads it from there, so it is never written to disk)")
    return sbatch


def submit(sbatch: str, path: Path) -> str:
    done = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout).split()) or f"exit code {done.returncode}"
        raise LaunchError(f"sbatch refused {path}: {reason}")
    return done.stdout.strip().split(";")[0]  # "id" or "id;cluster"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check(args)
        job = job_of(args)
        sbatch = None if args.dry_run else sbatch_or_fail(args.token_env)
        path = write_script(job, args.out)
        print(f"wrote {path}", flush=True)
        if sbatch is None:
            return 0
        job_id = submit(sbatch, path)
    except LaunchError as err:
        print(f"agent.launch: error: {err}", file=sys.stderr)
        return 2
    host = urlparse(args.api).hostname
    if host in ("127.0.0.1", "localhost", "::1"):
        print(f"note: {args.api} is only reachable from this host; pass --api with an address the compute "
              "nodes can reach unless they are this host", file=sys.stderr)
    print(f"submitted job {job_id}: {job.count} {job.role} worker(s) as array tasks {job_id}_[0-{job.count - 1}]; "
          f"logs in {job.log_dir or job.run_dir / 'logs' / 'slurm'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
