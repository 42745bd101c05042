"""The cognition base: short research notes the researcher retrieves while designing.

Our own entries summarise, in our words, what the key papers of the field contribute and when each
idea tends to help. `import_published(path)` reads the published cognition format (a JSON object
mapping a source to a list of entries with upper-case fields such as DESIGN_INSIGHT and
ALGORITHMIC_INNOVATION) so those notes can be searched too. Both go through the API:

    python -m agent.cognition --api URL --token TOKEN [--published cognition.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

ENTRIES: list[dict] = [
    {"title": "DeltaNet: the delta rule as a fast-weight memory", "source": "DeltaNet (Schlag et al. 2021; Yang et al. 2024)",
     "text": "Linear attention adds every key-value outer product to its state, so old associations are never "
             "removed and retrieval blurs as the context grows. The delta rule instead writes the difference "
             "between the new value and what the memory currently predicts for the key, scaled by a learned "
             "strength beta: S <- S + beta k (v - S^T k)^T. With L2-normalised keys and beta in (0, 1) the update "
             "is a contraction, which keeps training stable. A chunkwise form (a WY representation inside each "
             "chunk) makes training parallel and linear in length. Helps most on associative recall and "
             "in-context retrieval; short convolutions on q/k/v are important for it to work well."},
    {"title": "Gated DeltaNet: forgetting plus precise overwriting", "source": "Gated Delta Networks (Yang et al. 2024)",
     "text": "Adds a data-dependent decay alpha_t in (0, 1) to the delta rule: S <- alpha_t S + beta k (v - alpha_t "
             "S^T k)^T. Decay clears the whole memory quickly when the context changes; the delta rule edits "
             "single associations. The two are complementary: gating alone (Mamba2) forgets indiscriminately, "
             "delta alone cannot clear stale content. Parameterise the decay like Mamba2 (exp(-exp(A) * "
             "softplus(x W + dt_bias))) and initialise it close to 1. Improves language modelling loss and "
             "long-context retrieval at the same cost."},
    {"title": "Mamba2 / state space duality: scalar decay per head", "source": "Mamba2 (Dao and Gu 2024)",
     "text": "A selective state space model whose state transition is a scalar times identity per head, which makes "
             "it equivalent to a masked linear attention with a decay mask (state space duality) and allows "
             "matrix-multiply-friendly chunked training. Data-dependent step size dt controls how much each token "
             "writes and how fast the state decays. Short causal convolution before the SSM and a gated output "
             "normalisation are part of the block. Strong on language modelling; weaker on exact recall than "
             "delta-rule memories because it cannot selectively overwrite."},
    {"title": "GLA: gated linear attention with fine-grained decay", "source": "Gated Linear Attention (Yang et al. 2023)",
     "text": "Linear attention with a data-dependent, per-key-dimension decay: S <- diag(alpha_t) S + k v^T. "
             "Vector-valued gates give each state dimension its own timescale. Hardware-efficient chunkwise "
             "training keeps it fast. A useful motif when a model needs a spread of memory lengths across "
             "channels; its additive writes still interfere on recall-heavy tasks."},
    {"title": "RetNet: fixed exponential decay per head", "source": "Retentive Network (Sun et al. 2023)",
     "text": "Retention is linear attention with a fixed, head-specific exponential decay gamma^(t-s), with the "
             "decay rates spread across heads so some heads look far and others near. Has parallel, recurrent "
             "and chunkwise forms. Simple and stable, but data-independent decay cannot react to content; "
             "combining multi-scale fixed decays with data-dependent gates is a recurring successful pattern."},
    {"title": "RWKV: token shift and channel-wise decay", "source": "RWKV-4 to RWKV-7 (Peng et al. 2023-2025)",
     "text": "An RNN with time-mixing by per-channel exponential decay and a bonus for the current token, plus "
             "token shift (mixing each input with the previous token), which acts like a width-2 convolution. "
             "Later versions add data-dependent decay and a generalised delta-rule state update with vector "
             "gates. Token shift and small local convolutions are cheap and consistently helpful."},
    {"title": "Based: linear attention plus a sliding window", "source": "Based (Arora et al. 2024)",
     "text": "Shows a recall-throughput trade-off: a fixed-size recurrent state cannot store everything. Combines "
             "a linear attention with a Taylor-approximated exp feature map (global, approximate) and a small "
             "exact sliding-window attention (local, precise). Lesson for design: add a precise local path next "
             "to the compressed global memory and let the model mix them; the local path carries n-gram and "
             "copying patterns so the memory is spent on long-range content."},
    {"title": "Hyena: long implicit convolutions with gating", "source": "Hyena Hierarchy (Poli et al. 2023)",
     "text": "Replaces attention with interleaved long convolutions (filters produced by a small network of "
             "positional features) and element-wise multiplicative gating, computed with FFTs in O(T log T). "
             "Shows that data-controlled gating around convolutions recovers much of attention's quality. Long "
             "causal FIR or implicit filters are a cheap way to add position-aware mixing to a recurrent layer."},
    {"title": "Short convolutions and local mixing", "source": "H3, Mamba, DeltaNet ablations",
     "text": "Depthwise causal convolutions of width 3-4 on the inputs of a recurrent or linear-attention layer "
             "give it cheap access to the previous few tokens (shift-like behaviour, n-gram features, induction "
             "heads). Removing them usually hurts both loss and recall noticeably; very wide kernels add little. "
             "A parallel FIR branch over values, mixed in with a learned gate, is a related way to add a local path."},
    {"title": "Normalisation and feature maps for linear memories", "source": "Linear Transformers, cosFormer, DeltaNet",
     "text": "Linear attention needs a feature map for q and k: elu+1 keeps scores positive; normalising q and k "
             "(L2) bounds the state update and keeps the delta rule stable, which matters more than the exact "
             "nonlinearity. Output normalisation (RMSNorm per head, often gated by SiLU of an input projection) "
             "replaces the softmax denominator and stabilises training. A learned per-head temperature lets heads "
             "choose how sharp their reads are."},
    {"title": "Negative eigenvalues in the state transition", "source": "Grazzi et al. 2024 (state tracking)",
     "text": "With beta in (0, 1) the delta rule's transition I - beta k k^T has eigenvalues in [0, 1], which limits "
             "state tracking (e.g. parity). Allowing beta in (0, 2) gives eigenvalues in [-1, 1] and improves "
             "state-tracking tasks without hurting language modelling, at no extra cost."},
    {"title": "Hybrid and multi-path designs", "source": "Griffin, Samba, Hymba and related hybrids",
     "text": "Combining a recurrent or linear-attention memory with a local attention or convolution path, mixed "
             "per head or per layer, repeatedly beats either alone at equal cost. The mixing gate should be data "
             "dependent and initialised so that neither path is shut off at the start of training."},
]


def import_published(path: Path) -> list[dict]:
    """Entries of the published cognition format, each tagged with its source key."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping sources to lists of entries")
    entries = []
    for source, items in data.items():
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and any(isinstance(v, str) and v.strip() for v in item.values()):
                entries.append({**item, "source": str(source)})
    return entries


async def upload(client, entries: list[dict], batch: int = 200) -> dict:
    totals = {"received": 0, "added": 0, "skipped": 0}
    for start in range(0, len(entries), batch):
        result = await client.add_cognition(entries[start:start + batch])
        for key in totals:
            totals[key] += result.get(key, 0)
    return totals


async def ensure_cognition(client) -> dict:
    """Our entries, added once (the API skips entries it already has)."""
    return await upload(client, ENTRIES)


def main(argv: list[str] | None = None) -> None:
    from database.client import ApiClient

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("API_TOKEN", "dev-token"))
    parser.add_argument("--published", type=Path, help="a cognition file in the published format to import too")
    args = parser.parse_args(argv)

    async def run() -> dict:
        entries = ENTRIES + (import_published(args.published) if args.published else [])
        async with ApiClient(args.api, args.token) as client:
            return await upload(client, entries)

    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
