"""The sandboxed side of the dynamic checks: `python -m agent.checks.probe --program program.py --config config.json`.

Loads the program with the CPU stand-ins for fla, runs `agent.checks.dynamic.run_checks` and writes
the report to result.json in the working directory. The report is rewritten before each check, with
the check about to run in `running`, so that a child killed by a limit still tells the parent how far
it got and which check hung or blew up.
"""

from __future__ import annotations

import argparse
import json
import linecache
import time
from pathlib import Path

RESULT = "result.json"
PROGRAM_NAME = "program"


def write(report: dict) -> None:
    # Write then rename: the parent never reads a half-written file.
    partial = Path(RESULT + ".partial")
    partial.write_text(json.dumps(report, default=str))
    partial.replace(RESULT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--program", required=True, help="the layer program's file")
    parser.add_argument("--config", required=True, help="JSON of agent.checks.dynamic.ProbeConfig fields")
    args = parser.parse_args(argv)
    started = time.monotonic()
    source = Path(args.program).read_text()
    settings = json.loads(Path(args.config).read_text())

    import torch

    from agent.checks.dynamic import ProbeConfig, check, describe_error, run_checks, summarise
    from trainer.layers import ProgramError, load_layer_class, route_fla

    config = ProbeConfig.from_dict(settings)
    torch.set_num_threads(max(1, config.threads))
    # Tracebacks then quote the program's own lines, which is what a debugger needs to see.
    filename = f"<{PROGRAM_NAME}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    # The checks run on the CPU even where a GPU is present: the CPU stand-ins, and no torch.compile.
    route_fla(use_kernels=False)
    write({**summarise([], None, 0.0), "ok": False, "running": "load"})
    try:
        layer_cls = load_layer_class(source, name=PROGRAM_NAME, compile=False)
    except ProgramError as exc:
        cause = exc.__cause__
        detail = f"{exc}\n{describe_error(cause)}" if cause is not None else str(exc)
        write(summarise([check("load", False, detail)], None, time.monotonic() - started))
        return 0

    def progress(checks: list[dict], running: str | None) -> None:
        report = summarise([check("load", True, "the program loads"), *checks], None, time.monotonic() - started)
        write({**report, "running": running} if running else report)

    report = run_checks(layer_cls, config, on_check=progress)
    report["checks"].insert(0, check("load", True, "the program loads"))
    report["seconds"] = round(time.monotonic() - started, 3)
    write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
