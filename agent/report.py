"""What a run shows a researcher: a results table and five plots (agent.plots), and two runs compared.

    python -m agent.report show RUN_DIR                           # the table, and the plots into RUN_DIR/plots
    python -m agent.report compare RUN_DIR_A RUN_DIR_B [--out DIR]  # see agent.compare

Both read a run from its directory (agent.runfiles): the `experiments.json` every session exports, or
the embedded database of an older run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from agent.plots import write_plots
from trainer.cli import Parser, guard

__all__ = ["COLUMNS", "main", "pm", "render", "results_table", "row", "standings", "write_plots"]

COLUMNS = ["index", "name", "rung", "parent", "val loss", "bench avg", "recall", "fitness", "beats", "speed",
           "state", "status", "gpu s", "cpu s", "llm tokens"]


def _num(value, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return "-"


def pm(record: dict | None, key: str, digits: int = 4) -> str:
    """`mean ± SE` where the value is replicated over seeds (`<key>_stats`), else the bare value."""
    record = record or {}
    stats = record.get(f"{key}_stats")
    if stats and stats.get("n", 0) > 1:
        return f"{stats['mean']:.{digits}f} ± {stats['se']:.{digits}f}"
    return _num(record.get(key), digits)


def row(e: dict) -> list[str]:
    train, evaluation, costs = e.get("train") or {}, e.get("eval") or {}, e.get("costs") or {}
    # Beside the seed, as the evaluator measured them: speed, and decoding state per layer at the training length.
    cost = e.get("cost") or {}
    status = e.get("status", "?")
    if status == "failed" and e.get("failure"):
        status = f"failed@{e['failure'].get('stage')}"
    beats = "-" if e.get("is_baseline") or e.get("beats_baseline") is None else ("yes" if e["beats_baseline"] else "no")
    return [str(e["index"]), e["name"][:32], e.get("fidelity", "-"), _num(e.get("parent")), pm(train, "val_loss"),
            pm(evaluation, "average", 3), pm(evaluation, "recall", 3), _num(e.get("fitness"), 3), beats,
            _num(cost.get("speed_vs_seed"), 2), _num(cost.get("state_vs_seed"), 2), status,
            _num(float(costs.get("gpu_seconds") or 0), 0), _num(float(costs.get("cpu_seconds") or 0), 0),
            _num(int(costs.get("llm_tokens") or 0))]


def render(rows: list[list[str]]) -> str:
    """Rows of cells as aligned columns, the first row a header underlined with dashes."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_table(experiments: list[dict]) -> str:
    lines = render([COLUMNS, *[row(e) for e in experiments]]).splitlines()
    failures = [f"  #{e['index']} {e['failure']['stage']}: {e['failure']['reason'].splitlines()[0][:150]}"
                for e in experiments if e.get("failure")]
    return "\n".join(lines + (["failures:", *failures] if failures else []))


def standings(experiments: list[dict], weights: dict[str, float]) -> str:
    """One line per candidate that reached a second rung: its fitness per rung and its weighted standing."""
    from agent.ladder import ladder_fitness

    by_index = {e["index"]: e for e in experiments}
    lines = []
    for e in experiments:
        if e.get("origin") != "promoted" or e.get("promoted_from") not in by_index:
            continue
        chain = [e]
        while chain[-1].get("promoted_from") in by_index:
            chain.append(by_index[chain[-1]["promoted_from"]])
        by_rung = {step["fidelity"]: step.get("fitness") for step in reversed(chain)}
        standing = ladder_fitness(by_rung, weights)
        rungs = ", ".join(f"{rung} {_num(f, 3)} (weight {weights.get(rung, 1.0):.2f})" for rung, f in by_rung.items())
        lines.append(f"  {chain[-1]['name'][:40]}: {rungs} -> standing {_num(standing, 3)}")
    return "\n".join(["ladder standing (rung weights from calibration):", *lines]) if lines else ""


def show(run_dir: str, out: str | None) -> int:
    from agent.runfiles import load_run

    run = load_run(run_dir)
    print(results_table(run.experiments))
    plots = write_plots(run.experiments, run.tree, Path(out) if out else Path(run_dir) / "plots")
    print(f"plots: {', '.join(str(p) for p in plots)}")
    return 0


def compare(run_a: str, run_b: str, out: str | None) -> int:
    from agent.compare import compare_plots, compare_table
    from agent.runfiles import load_run

    a, b = load_run(run_a), load_run(run_b)
    print(compare_table(a, b))
    folder = Path(out) if out else Path(run_a) / f"compare-{b.name}"
    plots = compare_plots(a, b, folder)
    print(f"plots: {', '.join(str(p) for p in plots)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m agent.report", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{show,compare}")
    one = commands.add_parser("show", help="a run's results table and plots")
    one.add_argument("run_dir", metavar="RUN_DIR")
    one.add_argument("--out", default=None, help="folder for the plots (default RUN_DIR/plots)")
    two = commands.add_parser("compare", help="two runs side by side")
    two.add_argument("run_a", metavar="RUN_DIR_A")
    two.add_argument("run_b", metavar="RUN_DIR_B")
    two.add_argument("--out", default=None, help="folder for the plots (default RUN_DIR_A/compare-<B's name>)")
    args = parser.parse_args(argv)
    if args.command == "show":
        return show(args.run_dir, args.out)
    return compare(args.run_a, args.run_b, args.out)


if __name__ == "__main__":
    sys.exit(guard(main))
