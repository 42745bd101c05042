"""What a run shows a researcher: a results table and five plots.

Plots (PNG, in `RUN_DIR/plots/`): loss curves of each new experiment beside its parent's, fitness
over experiments, benchmark scores as mean ± SE over seeds against the baseline's band (per rung),
the lineage tree coloured by fitness with each node's rung, and the discovery curve (experiments that
beat the baseline by more than 2 SE against compute spent).
"""

from __future__ import annotations

import math
from pathlib import Path

COLUMNS = ["index", "name", "rung", "parent", "val loss", "bench avg", "recall", "fitness", "beats", "status",
           "gpu s", "cpu s", "llm tokens"]


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
    status = e.get("status", "?")
    if status == "failed" and e.get("failure"):
        status = f"failed@{e['failure'].get('stage')}"
    beats = "-" if e.get("is_baseline") or e.get("beats_baseline") is None else ("yes" if e["beats_baseline"] else "no")
    return [str(e["index"]), e["name"][:32], e.get("fidelity", "-"), _num(e.get("parent")), pm(train, "val_loss"),
            pm(evaluation, "average", 3), pm(evaluation, "recall", 3), _num(e.get("fitness"), 3), beats, status,
            _num(float(costs.get("gpu_seconds") or 0), 0), _num(float(costs.get("cpu_seconds") or 0), 0),
            _num(int(costs.get("llm_tokens") or 0))]


def results_table(experiments: list[dict]) -> str:
    rows = [COLUMNS, *[row(e) for e in experiments]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
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


def _curve(e: dict) -> tuple[list[float], list[float]]:
    points = [(s, v) for s, v in (e.get("train") or {}).get("loss_curve") or [] if v is not None]
    return [p[0] for p in points], [p[1] for p in points]


def write_plots(experiments: list[dict], tree: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for e in experiments:
        steps, losses = _curve(e)
        if steps:
            style = "k--" if e.get("is_baseline") else "-"
            parent = f" (parent #{e['parent']})" if e.get("parent") else ""
            ax.plot(steps, losses, style, label=f"#{e['index']} {e['name'][:24]}{parent}")
    ax.set(xlabel="step", ylabel="training loss", title="Loss curves: parents (dashed: baseline) and children")
    ax.legend(fontsize=7)
    written.append(_save(fig, out_dir / "loss_curves.png", plt))

    fig, ax = plt.subplots(figsize=(8, 4))
    scored = [e for e in experiments if isinstance(e.get("fitness"), (int, float))]
    ax.plot([e["index"] for e in scored], [e["fitness"] for e in scored], "o-")
    failed = [e["index"] for e in experiments if e.get("status") == "failed"]
    ax.plot(failed, [0.0] * len(failed), "rx", label="failed")
    ax.axhline(0.5, color="grey", linestyle=":", label="baseline parity")
    ax.set(xlabel="experiment index", ylabel="fitness", title="Fitness over experiments", ylim=(-0.05, 1.05))
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    written.append(_save(fig, out_dir / "fitness.png", plt))

    written.append(_lineage_plot(tree, out_dir / "lineage.png", plt))
    written.append(_scores_plot(experiments, out_dir / "scores.png", plt))

    fig, ax = plt.subplots(figsize=(8, 4))
    compute, beaten, spent, count = [0.0], [0], 0.0, 0
    for e in sorted(experiments, key=lambda e: e["index"]):
        costs = e.get("costs") or {}
        spent += float(costs.get("gpu_seconds") or 0) + float(costs.get("cpu_seconds") or 0)
        count += int(bool(e.get("beats_baseline")))
        compute.append(spent / 3600)
        beaten.append(count)
    ax.step(compute, beaten, where="post", marker="o", markersize=3)
    ax.set(xlabel="compute spent (GPU + CPU hours)", ylabel="experiments beating the baseline by > 2 SE",
           title=f"Discovery curve: {count} of {sum(not e.get('is_baseline') for e in experiments)} experiments "
                 "beat the baseline",
           ylim=(-0.1, max(1, count) * 1.1))
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    written.append(_save(fig, out_dir / "discovery.png", plt))
    return written


def _scores_plot(experiments: list[dict], path: Path, plt) -> Path:
    """Benchmark score of each experiment as mean ± SE over seeds, one panel per rung, the baseline's as a band."""
    from database.fitness import benchmark_score

    rungs = list(dict.fromkeys(e.get("fidelity", "?") for e in experiments))
    fig, axes = plt.subplots(1, max(1, len(rungs)), figsize=(5 * max(1, len(rungs)), 4), squeeze=False)
    for ax, rung in zip(axes[0], rungs, strict=False):
        for e in [e for e in experiments if e.get("fidelity", "?") == rung]:
            evaluation = e.get("eval") or {}
            stats = evaluation.get("benchmark_stats") or {"mean": benchmark_score(evaluation), "se": 0.0}
            if stats["mean"] is None:
                continue
            if e.get("is_baseline"):
                low, high = stats["mean"] - stats["se"], stats["mean"] + stats["se"]
                ax.axhspan(low, high, color="grey", alpha=0.3, label=f"baseline #{e['index']} ± SE")
                ax.axhline(stats["mean"], color="grey", linewidth=0.8)
            else:
                colour = "tab:green" if e.get("beats_baseline") else "tab:blue"
                ax.errorbar([e["index"]], [stats["mean"]], yerr=[stats["se"]], fmt="o", color=colour, capsize=3)
        ax.set(xlabel="experiment index", ylabel="benchmark score, mean ± SE over seeds", title=f"rung: {rung}")
        shown = [e["index"] for e in experiments if e.get("fidelity", "?") == rung and not e.get("is_baseline")]
        if 0 < len(shown) <= 20:
            ax.set_xticks(shown)
            ax.set_xlim(min(shown) - 0.5, max(shown) + 0.5)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Scores against the baseline (green: beats it by more than 2 SE)", fontsize=9)
    return _save(fig, path, plt)


def _lineage_plot(tree: list[dict], path: Path, plt) -> Path:
    children: dict[int | None, list[dict]] = {}
    for node in tree:
        children.setdefault(node.get("parent"), []).append(node)
    positions: dict[int, tuple[float, float]] = {}
    next_row = [0]

    def place(node: dict, depth: int) -> float:
        kids = children.get(node["index"], [])
        if kids:
            ys = [place(kid, depth + 1) for kid in kids]
            y = sum(ys) / len(ys)
        else:
            y = next_row[0]
            next_row[0] += 1
        positions[node["index"]] = (depth, y)
        return y

    known = {n["index"] for n in tree}
    for root in [n for n in tree if n.get("parent") is None or n.get("parent") not in known]:
        place(root, 0)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * next_row[0] + 1)))
    for node in tree:
        if node.get("parent") in positions and node["index"] in positions:
            (x0, y0), (x1, y1) = positions[node["parent"]], positions[node["index"]]
            ax.plot([x0, x1], [y0, y1], color="grey", linewidth=0.8)
    xs, ys, colours = [], [], []
    for node in tree:
        x, y = positions[node["index"]]
        xs.append(x)
        ys.append(y)
        colours.append(node["fitness"] if isinstance(node.get("fitness"), (int, float)) else float("nan"))
        rung = f" [{node['fidelity']}]" if node.get("fidelity") else ""
        label = f"#{node['index']} {(node.get('name') or '')[:32]}{rung}".strip()
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 3), fontsize=7)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    points = ax.scatter(xs, ys, c=colours, cmap=cmap, vmin=0, vmax=1, s=60, plotnonfinite=True)
    fig.colorbar(points, ax=ax, label="fitness (grey: none)")
    ax.set(xlabel="generation", title="Lineage", yticks=[])
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    # Room on the right for the labels of the last generation, and above and below the outer rows.
    ax.set_xlim(-0.3, max((x for x, _ in positions.values()), default=0) + 1.0)
    ax.margins(y=0.15)
    return _save(fig, path, plt)


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
