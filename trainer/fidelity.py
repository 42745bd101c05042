"""Fidelities: named model, data and training settings, from a laptop CPU to a GPU rack.

    synthetic  CPU, generated recall, copying, compression and memorisation tasks (trainer.synthetic)
    smoke    CPU, a couple of minutes on 2 cores: tiny width and depth, short sequences, local corpus
    explore  the exploration stage of the paper: 8 layers, hidden 256, seq 2048, ~1B tokens, bf16
    verify   verification scale: 24 layers, hidden 1024, untied embeddings, ~15B tokens

Every field can be overridden (`--set steps=50 hidden_size=32` on the command line, or a dict).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Fidelity:
    name: str
    # Model shell.
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    tie_embeddings: bool = True
    mlp_ratio: float = 4.0
    # Data.
    dataset: str = "shakespeare"
    seq_len: int = 128
    # Optimisation: AdamW with a warmup-stable-decay schedule.
    batch_size: int = 16  # sequences per optimiser step
    micro_batch_size: int = 16  # sequences per forward pass (gradient accumulation makes up the rest)
    steps: int = 200
    lr: float = 3e-3
    warmup_steps: int = 20
    decay_fraction: float = 0.2  # the last fraction of steps decays linearly to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # "auto": bfloat16 autocast on CUDA (fla's chunked kernels refuse float32), float32 on a CPU;
    # "bfloat16": bfloat16 autocast on any device, a CPU too; "float32": no autocast.
    dtype: str = "auto"
    compile: bool = False
    # Processes training one candidate together (DDP or FSDP under torchrun, trainer.distributed): 1 is a
    # plain run; 0 means every visible GPU when the device is "cuda", else one.
    nproc: int = 1
    # "ddp": every rank holds a full replica; "fsdp": weights, gradients and AdamW state sharded over the
    # ranks (trainer.sharded), for a model whose training state does not fit one device. The same step either way.
    parallel: str = "ddp"
    # Metrics.
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    # A candidate layer may use at most this many parameters per layer (the seed's times a margin).
    max_layer_params: int = 200_000
    # Divergence: stop when the training loss exceeds this multiple of its starting value.
    divergence_ratio: float = 2.0
    # CPU time one training run may use, in seconds per torch thread it runs (the kernel's RLIMIT_CPU): a
    # program too slow for the fidelity spends it and fails. 0: no CPU budget (GPU rungs, bounded by wall time).
    cpu_s: int = 0
    # Wall-clock limit of one training run: a generous backstop for a busy machine or a program that waits
    # on nothing. Reaching it is not the candidate's fault; the job is retried. And the sandbox's memory limit.
    timeout_s: int = 900
    memory_mb: int = 6144
    # Bytes a training child may add to its working directory (checkpoint, compiled kernels, logs).
    disk_mb: int = 1024
    eval_tier: str = "smoke"
    # Training seeds behind every score at this fidelity (the baseline's too): means with standard errors.
    replicates: int = 1

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def with_overrides(self, overrides: dict | None) -> Fidelity:
        if not overrides:
            return self
        fields = {f.name: f for f in dataclasses.fields(self)}
        typed = {}
        for key, value in overrides.items():
            if key not in fields:
                raise ValueError(f"unknown fidelity field {key!r}; fields are {sorted(fields)}")
            try:
                typed[key] = _coerce(value, type(getattr(self, key)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fidelity field {key!r}: {exc}") from exc
            if key in CHOICES and typed[key] not in CHOICES[key]:
                raise ValueError(f"fidelity field {key!r}: {typed[key]!r} is not one of {list(CHOICES[key])}")
            if isinstance(typed[key], float) and not math.isfinite(typed[key]):
                raise ValueError(f"fidelity field {key!r}: not a finite number: {value!r}")
            if key in POSITIVE and typed[key] <= 0:
                raise ValueError(f"fidelity field {key!r}: must be positive, got {value!r}")
            if key in NON_NEGATIVE and typed[key] < 0:
                raise ValueError(f"fidelity field {key!r}: must not be negative, got {value!r}")
        return dataclasses.replace(self, **typed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Fields with a fixed set of values.
CHOICES = {"dtype": ("auto", "float32", "bfloat16"), "parallel": ("ddp", "fsdp")}
# Fields that must be above zero, or at least zero: `steps=-5` would score an untrained model.
POSITIVE = {"vocab_size", "hidden_size", "num_layers", "num_heads", "mlp_ratio", "seq_len", "batch_size",
            "micro_batch_size", "steps", "lr", "log_every", "eval_batches", "max_layer_params", "divergence_ratio",
            "timeout_s", "memory_mb", "disk_mb", "replicates"}
NON_NEGATIVE = {"nproc", "warmup_steps", "decay_fraction", "min_lr_ratio", "weight_decay", "grad_clip", "eval_every"}


def _coerce(value, kind: type):
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"not a boolean: {value!r}")
            return value.lower() in ("1", "true", "yes")
        if value not in (0, 1):  # True, False, 0 or 1
            raise ValueError(f"not a boolean: {value!r}")
        return bool(value)
    if kind is int:
        # "50", "1e3", 50.0 are whole numbers; 2.5 is not (int() would truncate it silently).
        number = float(value) if isinstance(value, str) else value
        if (isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number)
                or number != int(number)):
            raise ValueError(f"not an integer: {value!r}")
        return int(number)
    if kind is float and isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return kind(value)


FIDELITIES = {
    # Generated recall, copying, compression and memorisation tasks (trainer.synthetic), trained directly.
    # One head of 64: with two heads of 32, one Gated DeltaNet seed in three (and four heads, more) stalled on
    # the recall plateau (its write gates shut), which no learning rate, warmup, curriculum or extra steps
    # mended; wider heads learn every seed. Hidden 128 learns too but saturates the tasks, so the top tiers tie.
    "synthetic": Fidelity(
        name="synthetic", vocab_size=256, hidden_size=64, num_layers=2, num_heads=1, dataset="synthetic",
        seq_len=64, batch_size=32, micro_batch_size=32, steps=1200, lr=3e-3, warmup_steps=30, decay_fraction=0.2,
        weight_decay=0.1, log_every=20, eval_every=0, eval_batches=4, max_layer_params=100_000,
        divergence_ratio=4.0, cpu_s=1800, timeout_s=4 * 3600, memory_mb=4096, eval_tier="synthetic", replicates=3,
    ),
    "smoke": Fidelity(
        name="smoke", vocab_size=2048, hidden_size=64, num_layers=2, num_heads=2, seq_len=128,
        batch_size=16, micro_batch_size=16, steps=240, lr=3e-3, warmup_steps=20, log_every=10, eval_every=60,
        eval_batches=8, max_layer_params=100_000, cpu_s=900, timeout_s=1800, memory_mb=6144, eval_tier="smoke",
        replicates=3,
    ),
    "explore": Fidelity(
        name="explore", vocab_size=32000, hidden_size=256, num_layers=8, num_heads=8, seq_len=2048,
        dataset="HuggingFaceFW/fineweb-edu:sample-10BT", batch_size=256, micro_batch_size=16, steps=2000,
        lr=3e-4, warmup_steps=100, dtype="bfloat16", compile=True, log_every=10, eval_every=200, eval_batches=32,
        max_layer_params=1_500_000, timeout_s=4 * 3600, memory_mb=65536, eval_tier="explore",
    ),
    "verify": Fidelity(
        name="verify", vocab_size=32000, hidden_size=1024, num_layers=24, num_heads=16, seq_len=2048,
        tie_embeddings=False, dataset="HuggingFaceFW/fineweb-edu:sample-10BT", batch_size=256,
        micro_batch_size=8, steps=28_600, lr=3e-4, warmup_steps=1000, dtype="bfloat16", compile=True,
        log_every=50, eval_every=1000, eval_batches=64, max_layer_params=20_000_000, timeout_s=7 * 24 * 3600,
        memory_mb=131072, disk_mb=8192, eval_tier="verify", nproc=0,
    ),
}


def get_fidelity(name: str, overrides: dict | None = None) -> Fidelity:
    if name not in FIDELITIES:
        raise ValueError(f"unknown fidelity {name!r}; choose one of {sorted(FIDELITIES)}")
    return FIDELITIES[name].with_overrides(overrides)


def parse_overrides(pairs: list[str] | None) -> dict:
    """["steps=50", "lr=1e-3"] -> {"steps": "50", "lr": "1e-3"} (typed by with_overrides)."""
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides
