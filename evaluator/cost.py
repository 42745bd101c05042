"""What a candidate costs to run, beside the seed's, measured by the trusted side on the same device.

    cost = cost_profile(candidate_checkpoint, seed_checkpoint, workdir=..., device="cpu")
    # {"speed_vs_seed": 0.83, "tokens_per_s": ..., "seed_tokens_per_s": ..., "peak_memory_mb": ...,
    #  "state_floats": ..., "state_floats_per_token": ..., "state_vs_seed": ..., ...}

A training run's own tokens/s is a claim of an untrusted process, taken on whatever else the machine
was doing at the time. Here the evaluator times both models in fresh sandboxed model servers, in this
one process, on one device, in alternating rounds (so that a burst of load falls on both), on the same
random batch of training-length sequences with gradients on, fetching one logit row per sequence so
that moving logits costs nothing: the ratio of the two median times is the candidate's speed relative
to the seed. Both servers run with the same threads (they take turns). Peak memory is the server's resident memory, as the sandbox's monitor saw it (CPU), or
the CUDA allocator's peak the server reports (GPU). The decoding state per layer, and how it grows per
token of context, is measured by behaviour in more fresh servers (`evaluator.state_size`); a program
whose cache does not hold its context gets None there and a reason, never a failed profile.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from evaluator.state_size import state_comparison
from trainer.boundary import SandboxedModel
from trainer.cores import claimed_cores

ROUNDS = 5
BATCH = 16  # sequences per timed request: enough work to time, little enough for a GPU shared by several


def _shape(checkpoint: Path) -> tuple[int, int]:
    lm = json.loads((Path(checkpoint) / "config.json").read_text())["lm"]
    return int(lm["vocab_size"]), int(lm.get("max_seq_len") or 128)


def _timed(model: SandboxedModel, ids: torch.Tensor) -> float:
    rows = [(ids.shape[1] - 1, ids.shape[1])] * ids.shape[0]
    started = time.perf_counter()
    model.request(ids, rows, train=True, grad=True)
    return time.perf_counter() - started


def cost_profile(candidate: Path, seed: Path, *, workdir: Path, device: str = "cpu", rounds: int = ROUNDS,
                 batch_size: int | None = None, timeout_s: float = 600, state: bool = True) -> dict:
    """Speed relative to the seed (above 1: faster), tokens/s of each, the candidate's peak memory, and
    (with `state`) the decoding state per layer of each and their ratio."""
    vocab, length = _shape(candidate)
    batch = batch_size or BATCH
    ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    with claimed_cores() as threads:
        # Both servers get the same threads: they take turns, so each may use all this job claimed.
        models = {name: SandboxedModel(path, workdir=Path(workdir) / name, device=device, timeout_s=timeout_s,
                                       threads=threads) for name, path in (("candidate", candidate), ("seed", seed))}
        profile = _profile(models, ids, rounds, device)
        if state:
            profile.update(state_comparison(candidate, seed, workdir=Path(workdir) / "state", device=device,
                                            threads=threads, timeout_s=timeout_s))
        return profile


def _profile(models: dict[str, SandboxedModel], ids: torch.Tensor, rounds: int, device: str) -> dict:
    times: dict[str, list[float]] = {name: [] for name in models}
    try:
        for model in models.values():
            _timed(model.start(), ids)  # warm-up: start-up, allocation and compilation are not throughput
        for round_ in range(rounds):
            order = ["candidate", "seed"] if round_ % 2 == 0 else ["seed", "candidate"]
            for name in order:
                times[name].append(_timed(models[name], ids))
    finally:
        results = {name: model.close() for name, model in models.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    batch, length = ids.shape
    tokens = batch * length
    return {"speed_vs_seed": round(median["seed"] / median["candidate"], 4),
            "tokens_per_s": round(tokens / median["candidate"], 1), "seed_tokens_per_s": round(tokens / median["seed"], 1),
            "peak_memory_mb": round(results["candidate"].peak_memory_mb, 1) if results["candidate"] else None,
            "seed_peak_memory_mb": round(results["seed"].peak_memory_mb, 1) if results["seed"] else None,
            "device": device, "rounds": rounds, "batch": [batch, length], "threads": models["seed"].threads}
