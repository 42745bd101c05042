"""The reference panel: known token mixers as layer programs, and the order the literature expects.

Each entry is (program file, tier); tier 1 is the best on associative recall at equal state size.
EXPECTED.md beside this file gives the sources. DeltaNet is the seed program itself.
"""

from __future__ import annotations

from pathlib import Path

from trainer.layers import SEED_PROGRAM

HERE = Path(__file__).parent

PANEL: dict[str, tuple[Path, int]] = {
    "softmax_attention": (HERE / "softmax_attention.py", 1),
    "deltanet": (SEED_PROGRAM, 2),
    "gated_deltanet": (HERE / "gated_deltanet.py", 2),
    "gla": (HERE / "gla.py", 3),
    "retnet": (HERE / "retnet.py", 4),
    "linear_attention": (HERE / "linear_attention.py", 4),
    "causal_mean": (HERE / "causal_mean.py", 5),
    "no_mixing": (HERE / "no_mixing.py", 6),
}


def expected_tier(name: str) -> int | None:
    entry = PANEL.get(name)
    return entry[1] if entry else None


def panel_programs(names: list[str] | None = None) -> dict[str, Path]:
    """name -> program file, in the expected order (best first)."""
    chosen = names or list(PANEL)
    unknown = [n for n in chosen if n not in PANEL]
    if unknown:
        raise ValueError(f"unknown panel member(s) {unknown}; the panel is {list(PANEL)}")
    return {name: PANEL[name][0] for name in chosen}
