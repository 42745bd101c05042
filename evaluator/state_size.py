"""How much decoding state a candidate carries per token of context, measured by behaviour.

    state = state_profile(checkpoint, workdir=..., device="cpu")
    # {"state_floats": 1280.0, "state_floats_per_token": 0.0, "state_constant_floats": 1280.0, ...}
    # or {"state_floats": None, "state_floats_per_token": None, "state_reason": "..."}

A program could claim any state size, so nothing here asks it. The trusted side picks random ids of
the training length L and, for a prefix of P tokens:
1. server A reads the whole sequence without a cache: the reference logits;
2. server A reads ids[:P] with a cache (a "prefill", `trainer.boundary`) and sends that cache back as
   plain tensors; its logits must be the reference's on positions 0..P-1;
3. a fresh server B (a new sandbox: nothing can hide in process memory) reads ids[P:] after that
   cache; its logits must be the reference's on positions P..L-1.
Only a cache that passes holds the context, and then its size is what decoding costs: the bytes of its
tensors / 4 (float32 equivalents, so that a wide or packed dtype hides nothing), per sequence and
per layer. Two prefixes (L/4 and L/2) split it into a constant part and a part that grows with every
token (a softmax attention's keys and values), and `state_floats` is the state at context L.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.boundary import SandboxedModel
from trainer.state_codec import StateError, unpack

PREFIXES = (0.25, 0.5)
ROWS = 2
# Largest logit difference, over the largest reference logit, that still counts as the same logits:
# float32 rounding of a chunked against a split computation stays near 1e-6; bfloat16 near 1e-2.
TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2}
KEYS = ("state_floats", "state_floats_per_token", "state_constant_floats")


class StateRejected(Exception):
    """The program's cache does not reproduce its own uncached logits."""


def _differs(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return float((logits - reference).abs().max() / reference.abs().max().clamp(min=1e-6))


def _check(logits: torch.Tensor, reference: torch.Tensor, tolerance: float, what: str) -> None:
    off = _differs(logits, reference)
    if not off <= tolerance:  # NaN fails too
        raise StateRejected(f"{what} misses the uncached logits by {off:.3g} of their scale "
                            f"(tolerance {tolerance:g}): the cache does not hold the context")


def _floats(checkpoint: Path, ids: torch.Tensor, prefixes: list[int], tolerance: float, layers: int, *,
            workdir: Path, **options) -> dict[int, float]:
    """Floats of checked decoding state per sequence and layer after each prefix."""
    with SandboxedModel(checkpoint, workdir=workdir / "reader", **options) as reader:
        reference = reader.request(ids)
        prefills = {prefix: reader.prefill(ids[:, :prefix]) for prefix in prefixes}
    floats = {}
    for prefix, (logits, layout, blob) in prefills.items():
        _check(logits, reference[:, :prefix], tolerance, f"reading {prefix} tokens with a cache")
        size = unpack(layout, blob)[1]  # the layout and bytes must be plain tensors before anything reads them
        with SandboxedModel(checkpoint, workdir=workdir / f"continue-{prefix}", **options) as fresh:
            logits = fresh.resume(ids[:, prefix:], layout, blob, offset=prefix)
        _check(logits, reference[:, prefix:], tolerance,
               f"continuing from the cache of {prefix} tokens in a fresh server")
        floats[prefix] = size / 4 / ids.shape[0] / layers
    return floats


def state_profile(checkpoint: Path, *, workdir: Path, device: str = "cpu", threads: int | None = None,
                  timeout_s: float = 600) -> dict:
    """The checked decoding state per layer at the training length, its growth per token and constant part."""
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    lm = config["lm"]
    length, layers = int(lm.get("max_seq_len") or 128), int(lm["num_layers"])
    prefixes = sorted({int(length * share) for share in PREFIXES} - {0})
    if len(prefixes) < 2:
        return _unmeasured(f"a training length of {length} is too short to split at two prefixes")
    ids = torch.randint(0, int(lm["vocab_size"]), (ROWS, length), generator=torch.Generator().manual_seed(1))
    precise = config.get("dtype") != "bfloat16" and not device.startswith("cuda")
    tolerance = TOLERANCE["float32" if precise else "bfloat16"]
    try:
        floats = _floats(checkpoint, ids, prefixes, tolerance, layers, workdir=Path(workdir), device=device,
                         threads=threads, timeout_s=timeout_s)
    except (StateRejected, StateError, RuntimeError, OSError, ValueError) as err:
        # The candidate's cache failed or lied: no size, and a reason; the cost profile goes on.
        return _unmeasured(str(err)[:300])
    (short, at_short), (long, at_long) = sorted(floats.items())
    per_token = (at_long - at_short) / (long - short)
    constant = at_short - per_token * short
    return {"state_floats": round(constant + per_token * length, 1), "state_floats_per_token": round(per_token, 3),
            "state_constant_floats": round(constant, 1), "state_context": length, "state_prefixes": prefixes}


def _unmeasured(reason: str) -> dict:
    return {**dict.fromkeys(KEYS), "state_reason": reason}


def state_comparison(candidate: Path, seed: Path, *, workdir: Path, **options) -> dict:
    """The candidate's state profile, the seed's under `seed_` names, and their ratio at the training length."""
    mine = state_profile(candidate, workdir=Path(workdir) / "candidate", **options)
    base = state_profile(seed, workdir=Path(workdir) / "seed", **options)
    result = {**mine, **{f"seed_{key}": value for key, value in base.items() if key in (*KEYS, "state_reason")}}
    ratio = None
    if mine["state_floats"] is not None and base["state_floats"]:
        ratio = round(mine["state_floats"] / base["state_floats"], 4)
    return {**result, "state_vs_seed": ratio}
