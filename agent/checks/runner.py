"""Parent side of the checks: static in-process, dynamic in a sandboxed child, then the trusted leak check.

    report = check_program(source, get_fidelity("smoke"), workdir=Path("runs/default/sandbox/check-7"))

Blocking; async callers use `asyncio.to_thread`. The combined report:

    ok                 every hard check passed
    failed             names of the failed hard checks ("static" when the program did not pass them)
    flagged            soft checks that raised a concern (cost growth), never a rejection on their own (a child
                       killed while running one is: the layer cannot run at that size)
    static             the static report (errors and warnings with line numbers)
    checks             the dynamic checks, [{name, ok, hard, detail, ...}]
    warnings           static warnings and soft-check concerns, as sentences
    params_per_layer   parameters of one layer at the fidelity's width
    seconds            wall time of the whole check
    reason             why the sandboxed child did not finish, when it did not
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from agent.checks.dynamic import ProbeConfig, check, summarise
from agent.checks.static import static_check
from agent.checks.trusted import trusted_leak_check
from trainer.sandbox import MachineBusy, run_sandboxed

# The checks may use this much CPU time per thread (the kernel's RLIMIT_CPU): a layer too slow to check
# spends it and fails. The wall clock is only a backstop, for a busy machine or a program that sleeps.
CPU_S = 180
TIMEOUT_S = 900.0
MEMORY_MB = 4096
DISK_MB = 256  # the checks write a report and nothing else worth keeping
STDERR_CHARS = 1500


def dynamic_check(source: str, fidelity, *, workdir: Path, timeout_s: float = TIMEOUT_S, cpu_s: int = CPU_S,
                  memory_mb: int = MEMORY_MB, threads: int = 1, stop: threading.Event | None = None,
                  **overrides) -> dict:
    """Run `agent.checks.probe` on the program in the sandbox; `overrides` are ProbeConfig fields.

    Setting `stop` kills the child (the caller's job was cancelled). Raises MachineBusy when only the
    wall-clock backstop broke.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "program.py").write_text(source)
    config = ProbeConfig.from_fidelity(fidelity, threads=threads, **overrides)
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))
    argv = [sys.executable, "-m", "agent.checks.probe", "--program", "program.py", "--config", "config.json"]
    # No GPU for the checks (they measure CPU behaviour), and one thread each so that timings are comparable.
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    sandbox = run_sandboxed(argv, workdir=workdir, timeout_s=timeout_s, memory_mb=memory_mb, env=env,
                           cpu_s=cpu_s * threads, disk_mb=DISK_MB, stop=stop)
    if sandbox.timed_out:
        raise MachineBusy(f"the checks ran past their {timeout_s:.0f} s wall-clock backstop before using their "
                          f"{cpu_s * threads} CPU-seconds: the machine is too busy (or the program waits on "
                          "nothing); the job is retried")
    report = sandbox.result
    if sandbox.ok and report and "running" not in report:
        return report
    return _crashed(report, sandbox)


def _crashed(partial: dict | None, sandbox) -> dict:
    """A report for a child that died: the checks it finished, and the one it was running, failed."""
    checks = list((partial or {}).get("checks") or [])
    running = (partial or {}).get("running") or "sandbox"
    stderr = sandbox.stderr_tail.strip()[-STDERR_CHARS:]
    detail = f"the check process stopped during this check: {sandbox.reason}" + (f"\n{stderr}" if stderr else "")
    # Hard even for a soft check: the child was killed (time, memory), so the layer cannot run at that size.
    checks.append(check(running, False, detail))
    report = summarise(checks, (partial or {}).get("params_per_layer"), sandbox.wall_s)
    report["reason"] = sandbox.reason
    return report


def check_program(source: str, fidelity, workdir: Path, **options) -> dict:
    """Static checks, then (when they pass) the dynamic checks in the sandbox: one combined report."""
    started = time.monotonic()
    static = static_check(source)
    if not static["ok"]:
        return {"ok": False, "failed": ["static"], "flagged": [], "static": static, "checks": [],
                "warnings": list(static["warnings"]), "params_per_layer": None,
                "seconds": round(time.monotonic() - started, 3), "fidelity": fidelity.name, "reason": None}
    dynamic = dynamic_check(source, fidelity, workdir=workdir, **options)
    if dynamic["ok"]:
        # The verdict that counts: causality judged in this process from the logits of a sandboxed model.
        trusted = trusted_leak_check(source, fidelity, workdir=Path(workdir) / "trusted", stop=options.get("stop"))
        dynamic = {**dynamic, "checks": [*dynamic["checks"], trusted]}
        if not trusted["ok"]:
            dynamic.update(ok=False, failed=[*dynamic["failed"], trusted["name"]])
    warnings = [*static["warnings"], *(c["detail"] for c in dynamic["checks"] if c.get("warning"))]
    return {**dynamic, "static": static, "warnings": warnings, "seconds": round(time.monotonic() - started, 3),
            "fidelity": fidelity.name, "reason": dynamic.get("reason")}
