"""Two runs side by side: did a change to the search (a setting, a proposer, a ladder) pay off?

    python -m agent.report compare RUN_DIR_A RUN_DIR_B [--out DIR]

Prints a summary table (experiments, scored, beating the baseline, best fitness, compute) and the
candidates both runs trained: the same program at the same rung, matched by the sha256 of its text
(else by name), with each run's validation loss and fitness. Writes into DIR (default `compare/`
inside RUN_DIR_A): best_fitness.png (the best fitness so far against compute), discovery.png (both
discovery curves overlaid) and matched.png (each shared candidate's scores in A against B).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent.plots import _finite, _save, compute_curve, pyplot
from agent.report import _num, pm, render
from agent.runfiles import Run


def program_key(e: dict) -> tuple[str, str]:
    """(rung, sha256 of the program) or, for a document without its program, (rung, name)."""
    rung = e.get("fidelity") or "?"
    if e.get("program"):
        return rung, hashlib.sha256(e["program"].encode()).hexdigest()
    digest = (e.get("train") or {}).get("program_sha256")
    return (rung, digest) if digest else (rung, f"name:{e.get('name')}")


def matched(a: Run, b: Run) -> list[tuple[dict, dict]]:
    """Pairs of experiments that trained the same program at the same rung, first occurrence in each run."""
    in_b: dict[tuple[str, str], dict] = {}
    for e in b.experiments:
        in_b.setdefault(program_key(e), e)
    pairs, seen = [], set()
    for e in a.experiments:
        key = program_key(e)
        if key in in_b and key not in seen:
            seen.add(key)
            pairs.append((e, in_b[key]))
    return pairs


def summary(run: Run) -> dict:
    candidates = [e for e in run.experiments if not e.get("is_baseline")]
    scored = [e for e in candidates if _finite(e.get("fitness"))]
    best = max(scored, key=lambda e: e["fitness"], default=None)
    hours = compute_curve(run.experiments)[-1][0] if run.experiments else 0.0
    return {"experiments": len(candidates), "scored": len(scored),
            "failed": sum(e.get("status") == "failed" for e in candidates),
            "beat the baseline": sum(bool(e.get("beats_baseline")) for e in candidates),
            "best fitness": f"{_num(best['fitness'], 3)} (#{best['index']} {best['name'][:24]})" if best else "-",
            "compute (h)": f"{hours:.2f}",
            "llm tokens": str(sum(int((e.get("costs") or {}).get("llm_tokens") or 0) for e in run.experiments))}


def compare_table(a: Run, b: Run) -> str:
    left, right = summary(a), summary(b)
    lines = [render([["", f"A: {a.name}", f"B: {b.name}"],
                     *[[key, str(left[key]), str(right[key])] for key in left]])]
    pairs = matched(a, b)
    lines.append("")
    if not pairs:
        lines.append("no candidate in common (matched by program sha256, else by name)")
        return "\n".join(lines)
    header = ["candidate", "rung", "A #", "A val loss", "A fitness", "B #", "B val loss", "B fitness"]
    rows = [[ea["name"][:32], ea.get("fidelity") or "-", str(ea["index"]), pm(ea.get("train"), "val_loss"),
             _num(ea.get("fitness"), 3), str(eb["index"]), pm(eb.get("train"), "val_loss"), _num(eb.get("fitness"), 3)]
            for ea, eb in pairs]
    lines.append(f"candidates in both runs ({len(pairs)}):")
    lines.append(render([header, *rows]))
    return "\n".join(lines)


def best_so_far(run: Run) -> tuple[list[float], list[float]]:
    """(compute hours, best fitness of a candidate so far) after each scored candidate."""
    hours, best, top = [], [], None
    for spent, e in compute_curve(run.experiments):
        if e.get("is_baseline") or not _finite(e.get("fitness")):
            continue
        top = e["fitness"] if top is None else max(top, e["fitness"])
        hours.append(spent)
        best.append(top)
    return hours, best


def discovery(run: Run) -> tuple[list[float], list[int]]:
    hours, beaten, count = [0.0], [0], 0
    for spent, e in compute_curve(run.experiments):
        count += int(bool(e.get("beats_baseline")))
        hours.append(spent)
        beaten.append(count)
    return hours, beaten


def compare_plots(a: Run, b: Run, out: Path) -> list[Path]:
    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = ((a, "A", "tab:blue"), (b, "B", "tab:orange"))

    fig, ax = plt.subplots(figsize=(8, 4))
    for run, tag, colour in runs:
        hours, best = best_so_far(run)
        ax.step(hours, best, where="post", marker="o", markersize=4, color=colour, label=f"{tag}: {run.name}")
    ax.axhline(0.5, color="grey", linestyle=":", label="baseline parity")
    ax.set(xlabel="compute spent (GPU + CPU hours)", ylabel="best fitness so far", title="Best fitness against compute")
    ax.legend(fontsize=8)
    written = [_save(fig, out / "best_fitness.png", plt)]

    fig, ax = plt.subplots(figsize=(8, 4))
    for run, tag, colour in runs:
        hours, beaten = discovery(run)
        ax.step(hours, beaten, where="post", marker="o", markersize=3, color=colour, label=f"{tag}: {run.name}")
    ax.set(xlabel="compute spent (GPU + CPU hours)", ylabel="experiments beating the baseline by > 2 SE",
           title="Discovery curves")
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "discovery.png", plt))
    written.append(_matched_plot(a, b, out / "matched.png", plt))
    return written


def _stat(record: dict | None, key: str) -> tuple[float | None, float]:
    record = record or {}
    stats = record.get(f"{key}_stats") or {}
    if _finite(stats.get("mean")):
        return stats["mean"], float(stats.get("se") or 0.0)
    return (record[key], 0.0) if _finite(record.get(key)) else (None, 0.0)


def _fitness_stat(e: dict) -> tuple[float | None, float]:
    return (e["fitness"], 0.0) if _finite(e.get("fitness")) else (None, 0.0)


METRICS = (("validation loss, mean ± SE", lambda e: _stat(e.get("train"), "val_loss")),
           ("fitness", _fitness_stat))


def _matched_plot(a: Run, b: Run, path: Path, plt) -> Path:
    """The candidates both runs trained, A's score beside B's: one column per rung (their scales differ)."""
    pairs = matched(a, b)
    rungs = list(dict.fromkeys(ea.get("fidelity") or "?" for ea, _ in pairs)) or ["-"]
    fig, axes = plt.subplots(2, len(rungs), figsize=(max(6, 4.5 * len(rungs)), 7), squeeze=False)
    for column, rung in enumerate(rungs):
        on_rung = [(ea, eb) for ea, eb in pairs if (ea.get("fidelity") or "?") == rung]
        for row, (what, getter) in enumerate(METRICS):
            ax = axes[row][column]
            for x, (ea, eb) in enumerate(on_rung):
                for offset, e, tag, colour in ((-0.12, ea, "A", "tab:blue"), (0.12, eb, "B", "tab:orange")):
                    value, se = getter(e)
                    if value is not None:
                        ax.errorbar([x + offset], [value], yerr=[se], fmt="s" if e.get("is_baseline") else "o",
                                    color=colour, capsize=3, label=f"{tag}: {(a if tag == 'A' else b).name}"
                                    if x == 0 else None)
            ax.set_xticks(range(len(on_rung)), [ea["name"][:22] for ea, _ in on_rung], rotation=25, ha="right",
                          fontsize=7)
            ax.set_xlim(-0.6, max(1, len(on_rung)) - 0.4)
            ax.set(ylabel=what, title=f"rung: {rung}" if row == 0 else None)
            if on_rung:
                ax.legend(fontsize=7)
    fig.suptitle(f"Candidates trained in both runs ({len(pairs)}, matched by program; squares: baselines)",
                 fontsize=9)
    return _save(fig, path, plt)
