"""A throwaway one-node SLURM cluster for tests: munged, slurmctld and slurmd in one temporary folder.

    cluster = OneNodeSlurm(tmp_path).start()   # raises SlurmUnavailable(reason) when it cannot run here
    env = cluster.env()                          # SLURM_CONF for sbatch, squeue, scancel
    cluster.stop()

Everything (key, sockets, state, spool, logs, ports) lives under the folder, so it never touches a
system installation and several can run side by side. The daemons run in the foreground as children
of the test; the node is the real machine, with its real CPUs and memory, and no cgroup plugins.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here; the message names the missing program, privilege or kernel feature."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _find(program: str) -> str:
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"]:
        path = Path(folder) / program
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise SlurmUnavailable(f"{program} is not installed (Debian: apt-get install slurm-wlm munge)")


def _real_memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return max(1, total_kb // 1024 - 512)  # slurmd drains a node that reports less than configured


def slurm_conf(home: Path, cpus: int, memory_mb: int, ctld_port: int, slurmd_port: int, user: str) -> str:
    # proctrack/linuxproc and task/none track jobs by process tree: no cgroup mounts, no delegation needed.
    # select/cons_tres with CR_CPU lets the array's tasks share the node, one CPU each.
    return "\n".join([
        "ClusterName=testcluster",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={home / 'munge.socket'}",
        f"StateSaveLocation={home / 'state'}",
        f"SlurmdSpoolDir={home / 'spool'}",
        f"SlurmctldPidFile={home / 'slurmctld.pid'}",
        f"SlurmdPidFile={home / 'slurmd.pid'}",
        f"SlurmctldLogFile={home / 'slurmctld.log'}",
        f"SlurmdLogFile={home / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "ReturnToService=2",
        "KillWait=20",
        "InactiveLimit=0",
        "MinJobAge=300",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class OneNodeSlurm:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def conf(self) -> Path:
        return self.home / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60.0) -> OneNodeSlurm:
        if os.geteuid() != 0:
            raise SlurmUnavailable("slurmd must run as root to start jobs (this test runs as an unprivileged user)")
        programs = {name: _find(name) for name in (*DAEMONS, "sbatch", "sinfo")}
        for folder in ("state", "spool"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o755)  # munged refuses a socket folder that others may write to
        key = self.home / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self.conf.write_text(slurm_conf(self.home, os.cpu_count() or 1, _real_memory_mb(), _free_port(),
                                        _free_port(), "root"))
        try:
            self._spawn("munged", [programs["munged"], "--foreground", "--force", f"--key-file={key}",
                                   f"--socket={self.home / 'munge.socket'}", f"--pid-file={self.home / 'munged.pid'}",
                                   f"--log-file={self.home / 'munged.log'}", f"--seed-file={self.home / 'munged.seed'}"])
            self._wait(lambda: (self.home / "munge.socket").exists(), timeout_s, "munged")
            self._spawn("slurmctld", [programs["slurmctld"], "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", [programs["slurmd"], "-D", "-f", str(self.conf), "-N", "localhost"])
            self._wait(self.node_idle, timeout_s, "the node to become idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.home / f"{name}.out", "ab")
        self.processes[name] = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [name for name, p in self.processes.items() if p.poll() is not None]
            if dead:
                raise SlurmUnavailable(f"{dead[0]} exited at start: {self.log_tail(dead[0])}")
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"timed out waiting for {what}: {self.log_tail('slurmd')}")

    def node_idle(self) -> bool:
        state = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%t"], env=self.env(), capture_output=True,
                               text=True, timeout=20)
        return state.returncode == 0 and state.stdout.strip() == "idle"

    def log_tail(self, name: str, chars: int = 600) -> str:
        text = ""
        for path in (self.home / f"{name}.log", self.home / f"{name}.out"):
            if path.exists():
                text += path.read_text(errors="replace")
        return " | ".join(text[-chars:].splitlines()) or "(no log)"

    def squeue(self, job: str) -> str:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %t"], env=self.env(), capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip()

    def stop(self, grace_s: float = 30.0) -> None:
        # Cancel whatever still runs so that its workers get SIGTERM from slurmd, then stop the daemons.
        if shutil.which("scancel") and self.processes.get("slurmctld") is not None:
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env(), capture_output=True, timeout=20)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and self._jobs_left():
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _jobs_left(self) -> bool:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env(), capture_output=True, text=True, timeout=20)
        return out.returncode == 0 and bool(out.stdout.strip())
