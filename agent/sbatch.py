"""The sbatch script `python -m agent.launch slurm` writes: N workers of one role as a SLURM job array.

Each array task runs one worker with the same entry point as compose and `LocalCluster` (see
agent.cluster.WORKERS). The script is meant to be read and adapted, then resubmitted by hand with
`API_TOKEN=... sbatch SCRIPT`: the bearer token comes from the submitting environment (sbatch
exports it to the job), never from the file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from agent.cluster import WORKERS

ROLES = sorted(WORKERS)
TIME_FORMATS = "MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS"
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str) -> int:
    """A SLURM --time value as seconds; ValueError naming the accepted formats otherwise."""
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a SLURM time; use {TIME_FORMATS}")
    days, first, second, third = match.groups()
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = int(days) * 86400 + int(first) * 3600 + int(second or 0) * 60 + int(third or 0)
    elif third is not None:  # H:M:S
        seconds = int(first) * 3600 + int(second) * 60 + int(third)
    else:  # M or M:S
        seconds = int(first) * 60 + int(second or 0)
    if seconds <= 0:
        raise ValueError(f"{text!r} is zero; give the workers some time")
    return seconds


def slurm_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock


def term_lead_s(limit_s: int | None) -> int:
    """How long before the limit the worker alone gets SIGTERM: time to hand its job back before the kill."""
    return 120 if limit_s is None else min(120, max(30, limit_s // 20))


def lease_margin_s(limit_s: int | None) -> int:
    """How long before the limit workers stop leasing: a tenth of the limit, within [2 x SIGTERM lead, 15 min]."""
    lead = term_lead_s(limit_s)
    return 900 if limit_s is None else max(2 * lead, min(900, limit_s // 10))


@dataclass
class SlurmJob:
    role: str
    count: int
    api_url: str
    run_dir: Path
    project: Path
    python: str
    gpus_per_job: int = 0
    cpus_per_task: int | None = None
    partition: str | None = None
    time_s: int | None = None
    token_env: str = "API_TOKEN"
    stop_leasing_before_s: int | None = None
    log_dir: Path | None = None
    workers_per_gpu: int = 1

    @property
    def name(self) -> str:
        return f"arch-{self.role}"

    @property
    def margin_s(self) -> int:
        return lease_margin_s(self.time_s) if self.stop_leasing_before_s is None else self.stop_leasing_before_s


def directives(job: SlurmJob) -> list[str]:
    logs = job.log_dir or job.run_dir / "logs" / "slurm"
    lines = [f"--job-name={job.name}", f"--array=0-{job.count - 1}", "--ntasks=1",
             f"--output={logs}/%x-%A_%a.out"]
    if job.cpus_per_task:
        lines.append(f"--cpus-per-task={job.cpus_per_task}")
    if job.gpus_per_job:
        lines.append(f"--gres=gpu:{job.gpus_per_job}")
    if job.partition:
        lines.append(f"--partition={job.partition}")
    if job.time_s:
        lines.append(f"--time={slurm_time(job.time_s)}")
    # B: signals the batch shell only, which `exec` makes the worker: it hands its job back while the
    # sandboxed training children still run, instead of all of them getting SIGTERM at once at the limit.
    lines.append(f"--signal=B:TERM@{term_lead_s(job.time_s)}")
    lines.append("--export=ALL")  # carries the token variable from the submitting shell, not from this file
    return [f"#SBATCH {line}" for line in lines]


def environment(job: SlurmJob) -> list[str]:
    q = shlex.quote
    lines = [f'if [ -z "${{{job.token_env}:-}}" ]; then',
             f'  echo "{job.token_env} is not set: export the API token in it before sbatch" >&2',
             "  exit 2",
             "fi"]
    if job.token_env != "API_TOKEN":
        lines.append(f'export API_TOKEN="${{{job.token_env}}}"')
    lines += [f"export API_URL={q(job.api_url)}",
              f"export RUN_DIR={q(str(job.run_dir))}",
              f"export WORKER_LEASE_MARGIN_S={job.margin_s}"]
    if job.time_s:
        # Fallback where squeue cannot be asked for the job's end from a compute node.
        lines.append(f"export WORKER_STOP_LEASING_AFTER_S={max(0, job.time_s - job.margin_s)}")
    if job.role == "trainer":
        share = job.workers_per_gpu
        lines += ["# One torch thread per allocated CPU, so that tasks sharing a node never oversubscribe it.",
                  'if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export TRAINER_THREADS="${TRAINER_THREADS:-'
                  + ("$SLURM_CPUS_PER_TASK" if share == 1 else f"$(( SLURM_CPUS_PER_TASK / {share} > 0 ? "
                     f"SLURM_CPUS_PER_TASK / {share} : 1 ))") + '}"; fi']
        if share > 1:
            lines += [f"# {share} trainer workers share each task's GPU, each with 1/{share} of its memory.",
                      f"export TRAINER_WORKERS_PER_GPU={share}"]
    if job.role == "evaluator" and job.gpus_per_job:
        lines.append('export EVALUATOR_DEVICE="${EVALUATOR_DEVICE:-cuda}"')
    return lines


def render(job: SlurmJob) -> str:
    q = shlex.quote
    command = " ".join(q(arg) for arg in WORKERS[job.role])
    margin, lead = job.margin_s, term_lead_s(job.time_s)
    header = [
        "#!/bin/bash",
        f"# {job.count} {job.role} worker(s) for the architecture-discovery service, one per array task.",
        "# Written by `python -m agent.launch slurm`; adapt it freely, then resubmit with",
        f"#   {job.token_env}=... sbatch THIS_FILE",
        f"# Each worker leases {job.role} jobs from {job.api_url}, stops leasing {margin} s before the",
        f"# time limit, and gets SIGTERM {lead} s before it: the job in hand goes back to the queue.",
    ]
    body = [
        "set -euo pipefail",
        *environment(job),
        f"cd {q(str(job.project))}",
        'echo "$(date -Is) ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-0} on $(hostname): '
        f'{job.role} worker for $API_URL"',
        "# exec: the worker replaces this shell, so the early SIGTERM above reaches it directly.",
        f'exec "${{PYTHON:-{job.python}}}" -m {command}',
    ]
    return "\n".join([*header, *directives(job), "", *body, ""])
