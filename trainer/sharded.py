"""FSDP: one candidate's weights, gradients and optimiser state sharded over the ranks (`parallel=fsdp`).

    python -m trainer.train ... --nproc 4 --set parallel=fsdp

PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`): each LM `Block` is one unit, the root (embedding,
final norm, head) another, so a rank holds 1/size of every parameter and gathers one block's weights at a
time for its forward and backward. Tied embeddings stay tied: the root owns the one shared parameter.
The step is the DDP step (trainer.distributed): every rank trains on its slice of the same global batch and
the gradients are averaged (reduce-scattered), so a step equals the single-process step up to float
rounding; only the storage differs. On a CPU the ranks talk over gloo, on CUDA over NCCL.

Parameters stay float32 (FSDP's mixed-precision policy is not used): under bfloat16 autocast the numbers
are those of a single process, which casts the same way. The model is built whole on every rank before it
is sharded, so each rank needs the full float32 weights once at start-up (not the gradients nor the AdamW
state, which are sharded); a model whose weights alone exceed one device would need meta-device init.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard

from trainer.model import Block


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """Shard `model` in place over the default process group: every `Block`, then the root. Returns it: its
    parameters are now DTensors, and calling it gathers each unit's weights when that unit runs."""
    blocks = [module for module in model.modules() if isinstance(module, Block)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no Block to shard; FSDP shards an LM block by block")
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether `module` (or the module a `torch.compile` wrapper holds) was sharded by `shard`."""
    return isinstance(getattr(module, "_orig_mod", module), FSDPModule)


@contextlib.contextmanager
def gradient_sync(module: torch.nn.Module, last: bool):
    """FSDP's `no_sync`: the micro-batches before the last accumulate unsharded gradients locally; the last
    one's backward reduce-scatters the sum, so the step averages the whole global batch once."""
    root = getattr(module, "_orig_mod", module)
    root.set_requires_gradient_sync(last)
    try:
        yield
    finally:
        root.set_requires_gradient_sync(True)


def full_model(model: torch.nn.Module, build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
    """The sharded `model`'s weights in a plain, unsharded module on rank 0's CPU (None on the other ranks),
    which `trainer.checkpoint.save_checkpoint` writes as it writes a single process's model.

    A collective: every rank must call it. `build()` makes a fresh module of the same architecture (on the
    CPU); its tied parameters stay tied, so the checkpoint holds them once, as a single process's does."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # cpu_offload: rank 0 alone gets it
    state = get_model_state_dict(model, options=options)
    if dist.get_rank() != 0:
        return None
    with torch.random.fork_rng(devices=[]):  # building draws an initialisation nobody uses; leave the generator alone
        plain = build()
    plain.load_state_dict(state)
    return plain
