"""The plots of a run, written as PNG files into `RUN_DIR/plots/` at the end of every session.

Every plot covers the whole run (all its sessions and rungs): the caller passes every experiment.

- loss_curves.png: per rung, each experiment's validation curve (mean over seeds) against the baseline's
  band of mean ± SE over the same seeds, zoomed on the second half of training where the differences are;
- fitness.png: per experiment, its fitness and parts as points, and below, each part's improvement over
  the baseline with its ±2 SE bar (what decides whether a difference counts);
- scores.png: benchmark score as mean ± SE over seeds against the baseline's band, per rung;
- lineage.png: the genealogy coloured by fitness, each node with its rung;
- discovery.png: experiments beating the baseline by more than 2 SE against compute spent.
"""

from __future__ import annotations

import math
from pathlib import Path

PART_STYLE = {"loss": ("o", "tab:blue"), "benchmark": ("s", "tab:orange"), "judge": ("^", "tab:purple")}
ZOOM_FROM = 0.5  # the loss axis fits the curves from this fraction of training on


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def label(e: dict) -> str:
    return f"#{e['index']} {(e.get('name') or '')[:24]}"


def write_plots(experiments: list[dict], tree: list[dict], out_dir: Path) -> list[Path]:
    plt = pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    experiments = sorted(experiments, key=lambda e: e["index"])
    return [_loss_plot(experiments, out_dir / "loss_curves.png", plt),
            _fitness_plot(experiments, out_dir / "fitness.png", plt),
            _scores_plot(experiments, out_dir / "scores.png", plt),
            _lineage_plot(tree, out_dir / "lineage.png", plt),
            _discovery_plot(experiments, out_dir / "discovery.png", plt)]


def rungs_of(experiments: list[dict]) -> list[str]:
    return list(dict.fromkeys(e.get("fidelity") or "?" for e in experiments))


def seed_curves(e: dict) -> list[list[tuple[float, float]]]:
    """The validation curve of each seed ([[step, loss], ...]), or the single one recorded."""
    train = e.get("train") or {}
    curves = train.get("val_curves") or ([train["val_curve"]] if train.get("val_curve") else [])
    return [[(s, v) for s, v in curve if _finite(v)] for curve in curves]


def mean_se_curve(curves: list[list[tuple[float, float]]]) -> tuple[list[float], list[float], list[float]]:
    """(steps, mean, SE) at the steps every seed's curve reached."""
    common = sorted(set.intersection(*(set(s for s, _ in c) for c in curves))) if curves else []
    values = [[dict(c)[step] for c in curves] for step in common]
    means = [sum(v) / len(v) for v in values]
    ses = [math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) if len(v) > 1 else 0.0
           for v, m in zip(values, means, strict=True)]
    return common, means, ses


def _loss_plot(experiments: list[dict], path: Path, plt) -> Path:
    rungs = rungs_of(experiments)
    fig, axes = plt.subplots(1, len(rungs), figsize=(6 * len(rungs), 4.5), squeeze=False)
    for ax, rung in zip(axes[0], rungs, strict=True):
        on_rung = [e for e in experiments if (e.get("fidelity") or "?") == rung]
        shown: list[tuple[float, float]] = []
        for order, e in enumerate(on_rung):
            shown += _loss_curve(ax, e, order, len(on_rung))
        _zoom_on_the_end(ax, shown)
        ax.set(xlabel="step", ylabel="validation loss (mean over seeds)", title=f"rung: {rung}")
        if shown:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no validation curves recorded", ha="center", transform=ax.transAxes)
    fig.suptitle(f"Validation loss against the baseline's seed band (axes fitted to the last "
                 f"{100 * (1 - ZOOM_FROM):.0f}% of training; bars: final mean ± SE)", fontsize=9)
    return _save(fig, path, plt)


def _loss_curve(ax, e: dict, order: int, count: int) -> list[tuple[float, float]]:
    """Draw one experiment's mean validation curve (the baseline's as a band); the points drawn."""
    curves = seed_curves(e)
    steps, means, ses = mean_se_curve(curves)
    if not steps:
        return []
    # The final values decide the comparison: each gets an error bar, nudged sideways so that bars at
    # the same last step stay apart.
    nudge = steps[-1] * 0.012 * (order - (count - 1) / 2)
    if e.get("is_baseline"):
        low = [m - s for m, s in zip(means, ses, strict=True)]
        high = [m + s for m, s in zip(means, ses, strict=True)]
        ax.fill_between(steps, low, high, color="grey", alpha=0.35,
                        label=f"baseline {label(e)}: mean ± SE, {len(curves)} seeds")
        ax.axhspan(low[-1], high[-1], color="grey", alpha=0.12)  # its final band, across the axis
        ax.plot(steps, means, "k--", linewidth=1)
        ax.errorbar([steps[-1] + nudge], [means[-1]], yerr=[ses[-1]], fmt="k_", capsize=3)
        return list(zip(steps, low, strict=True)) + list(zip(steps, high, strict=True))
    line, = ax.plot(steps, means, "-", marker=".", label=label(e))
    ax.errorbar([steps[-1] + nudge], [means[-1]], yerr=[ses[-1]], fmt="o", color=line.get_color(), capsize=3)
    return [(s, m + d * se) for s, m, se in zip(steps, means, ses, strict=True) for d in (-1, 1)]


def _zoom_on_the_end(ax, points: list[tuple[float, float]]) -> None:
    """Fit both axes to the end of training: the first steps' high losses would hide the differences."""
    if not points:
        return
    first, last = min(step for step, _ in points), max(step for step, _ in points)
    start = first + ZOOM_FROM * (last - first)
    end = [v for step, v in points if step >= start]
    low, high = min(end), max(end)
    pad = 0.15 * (high - low) or 0.05 * abs(high) or 0.1
    ax.set_ylim(low - pad, high + pad)
    if last > first:
        ax.set_xlim(start - 0.05 * (last - first), last + 0.08 * (last - first))


def _fitness_plot(experiments: list[dict], path: Path, plt) -> Path:
    """Fitness and its parts as points per experiment; below, each part's evidence with ±2 SE."""
    shown = [e for e in experiments if not e.get("is_baseline")]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7, 0.6 * len(shown) + 3), 7), sharex=True)
    xs, named = range(len(shown)), set()

    def once(ax, name: str) -> str | None:  # one legend entry per kind of point and panel
        first = (id(ax), name) not in named
        named.add((id(ax), name))
        return name if first else None

    for x, e in zip(xs, shown, strict=False):
        parts = e.get("fitness_parts") or {}
        for offset, (part, (marker, colour)) in zip((-0.24, -0.08, 0.08), PART_STYLE.items(), strict=True):
            if _finite(parts.get(part)):
                top.plot([x + offset], [parts[part]], marker, color=colour, label=once(top, part))
            found = (e.get("evidence") or {}).get(part)
            if found and _finite(found.get("difference")) and found.get("reference"):
                scale = 100 / abs(found["reference"])
                bottom.errorbar([x + offset], [found["difference"] * scale], yerr=[2 * found["se"] * scale],
                                fmt=marker, color=colour, capsize=3, label=once(bottom, part))
        if _finite(e.get("fitness")):
            top.plot([x + 0.24], [e["fitness"]], "D", color="black", markersize=8, label=once(top, "fitness"))
        elif e.get("status") == "failed":
            top.plot([x + 0.24], [0.0], "rx", markersize=8, label=once(top, "failed"))
    top.axhline(0.5, color="grey", linestyle=":", label="baseline parity")
    top.set(ylabel="fitness and its parts", ylim=(-0.05, 1.05),
            title="Fitness per experiment (points, not a time series)")
    bottom.axhline(0.0, color="grey", linestyle=":")
    bottom.set(ylabel="improvement over the baseline, % ± 2 SE", title="Each part's difference and its noise")
    bottom.set_xticks(list(xs), [label(e) for e in shown], rotation=30, ha="right", fontsize=7)
    for ax in (top, bottom):
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=7, loc="best")
    return _save(fig, path, plt)


def compute_curve(experiments: list[dict]) -> list[tuple[float, dict]]:
    """(compute spent in GPU + CPU hours after each experiment, the experiment), in index order."""
    spent, curve = 0.0, []
    for e in sorted(experiments, key=lambda e: e["index"]):
        costs = e.get("costs") or {}
        spent += float(costs.get("gpu_seconds") or 0) + float(costs.get("cpu_seconds") or 0)
        curve.append((spent / 3600, e))
    return curve


def _discovery_plot(experiments: list[dict], path: Path, plt) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    compute, beaten, count = [0.0], [0], 0
    for hours, e in compute_curve(experiments):
        count += int(bool(e.get("beats_baseline")))
        compute.append(hours)
        beaten.append(count)
    ax.step(compute, beaten, where="post", marker="o", markersize=3)
    ax.set(xlabel="compute spent (GPU + CPU hours)", ylabel="experiments beating the baseline by > 2 SE",
           title=f"Discovery curve: {count} of {sum(not e.get('is_baseline') for e in experiments)} experiments "
                 "beat the baseline",
           ylim=(-0.1, max(1, count) * 1.1))
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    return _save(fig, path, plt)


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
