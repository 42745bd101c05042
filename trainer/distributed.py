"""One candidate on several processes: DDP or FSDP under `torchrun`, NCCL on CUDA, gloo on a CPU.

    python -m trainer.train --program P --fidelity verify --out runs/big --nproc 8      # relaunches under torchrun
    python -m trainer.train ... --set nproc=2                                           # the same, as a fidelity field
    python -m trainer.train ... --nproc 2 --set parallel=fsdp                           # weights sharded (trainer.sharded)

`trainer.train` calls `init()` when torchrun started it (WORLD_SIZE > 1). Every rank draws the same global
batch from the same generator as a single process would, and trains on its own contiguous slice of it; DDP
averages the gradients, so a step equals the single-process step on the same batch (up to float rounding).
FSDP (`parallel=fsdp`, trainer.sharded) takes the same step with each rank holding a shard of the weights,
gradients and optimiser state; its checkpoint is gathered whole first. Only rank 0 writes result.json and
the checkpoint, in the single-process format.

In the sandbox (`sandbox_command`) the whole torchrun tree runs in one jail: torchrun itself is the
sandbox's outermost program (trusted code; the guard runs it as a launcher, `SANDBOX_LAUNCHER`), and
each rank runs the candidate under its own `trainer.sandbox_guard`. The jail's network namespace has
only a loopback interface, where the ranks meet: 127.0.0.1, never the host name (it does not resolve there).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The jail's host name ("sandbox") resolves nowhere, so torchrun must not hand it to the ranks as the
# rendezvous address; loopback is the one interface its network namespace has.
LOOPBACK, LOOPBACK_IFNAME = "127.0.0.1", "lo"
STRATEGIES = ("ddp", "fsdp")
# The sandbox's default thread bound for one training process (trainer.sandbox.spawn_sandboxed).
THREADS_PER_RANK = 256


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training; rank 0 of 1 for a plain run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The world torchrun describes in the environment (a single process without it)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", 1)) > 1


def resolve_nproc(nproc: int, device: str | None) -> int:
    """Processes for one training. 0 means automatic: every visible GPU for device "cuda" (verify's default),
    one process otherwise; a pinned device ("cuda:1", "cpu") never fans out by itself."""
    if nproc > 0:
        return nproc
    if (device or "cuda") == "cuda" and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


def device_for(requested: torch.device, here: World) -> torch.device:
    """Each rank owns the GPU of its local rank; a CPU run stays on the CPU."""
    if here.size > 1 and requested.type == "cuda":
        return torch.device("cuda", here.local_rank)
    return requested


def init(device: torch.device) -> None:
    """Join the process group torchrun set up (no-op for a single process)."""
    here = world()
    if here.size == 1 or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device, strategy: str = "ddp") -> torch.nn.Module:
    """The module a training step calls: the model itself for a single process, a DDP replica that averages
    gradients, or (FSDP) the model sharded in place, whose parameters become DTensor shards: build the
    optimiser from `model.parameters()` after this call."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown parallel strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    if not dist.is_initialized():
        return model
    if strategy == "fsdp":
        from trainer import sharded

        return sharded.shard(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def strategy_of(step_model: torch.nn.Module) -> str | None:
    """The strategy `step_model` trains with ("ddp", "fsdp"), None for a plain single-process model."""
    inner = getattr(step_model, "_orig_mod", step_model)  # under torch.compile
    if isinstance(inner, torch.nn.parallel.DistributedDataParallel):
        return "ddp"
    if not dist.is_initialized():  # a single process: nothing to import
        return None
    from trainer.sharded import is_sharded

    return "fsdp" if is_sharded(inner) else None


def full_model(model: torch.nn.Module, build) -> torch.nn.Module | None:
    """The trained weights in a plain module for rank 0 to save: `model` itself unless it is sharded, else
    a gathered copy that `build()` makes (None on the other ranks). Every rank must call it."""
    if not dist.is_initialized():
        return model
    from trainer import sharded

    return sharded.full_model(model, build) if sharded.is_sharded(model) else model


def local_micro_batches(draw, global_sequences: int, micro: int, here: World) -> list:
    """This rank's micro-batches of one optimiser step, as (inputs, labels) pairs.

    `draw(n)` gives n sequences; it is called exactly as a single process calls it (micro-batches of `micro`
    making up `global_sequences`), so the global batch and the data order do not depend on the world size.
    Each rank keeps a contiguous slice of 1/size of it, in micro-batches of at most `micro` sequences."""
    draws = [draw(micro) for _ in range(max(1, global_sequences // micro))]
    if here.size == 1:
        return draws
    inputs, labels = (torch.cat(parts) for parts in zip(*draws, strict=True))
    if len(inputs) % here.size:
        raise ValueError(f"a global batch of {len(inputs)} sequences does not split evenly over {here.size} "
                         f"processes; choose batch_size and nproc so that nproc divides it")
    share = len(inputs) // here.size
    start = here.rank * share
    mine = inputs[start:start + share].split(micro), labels[start:start + share].split(micro)
    return list(zip(*mine, strict=True))


def gradient_sync(step_model: torch.nn.Module, last: bool):
    """DDP and FSDP average gradients once per optimiser step: on the last micro-batch, not on every one."""
    if strategy_of(step_model) == "fsdp":
        from trainer import sharded

        return sharded.gradient_sync(step_model, last)
    if last or not hasattr(step_model, "no_sync"):
        return contextlib.nullcontext()
    return step_model.no_sync()


def reduce(value: float, op: str = "mean") -> float:
    """`value` combined over the ranks (mean, sum or max); the value itself for a single process.
    Every decision that ends the loop (NaN, divergence) uses reduced values, so all ranks take it together."""
    if not dist.is_initialized():
        return value
    ops = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    # NCCL reduces only CUDA tensors; gloo takes CPU ones.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=ops[op])
    total = tensor.item()
    return total / dist.get_world_size() if op == "mean" else total


def torchrun_argv(nproc: int, module: str, args: list[str], *, python: str | None = None) -> list[str]:
    """`python -m torch.distributed.run` starting `nproc` copies of `python -m MODULE ARGS` on this host."""
    # "--" ends torchrun's own options: the program's (--nproc) would otherwise read as abbreviations of them.
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", LOOPBACK,
            "--nproc-per-node", str(nproc), "--module", "--", module, *args]


def rank_environment(device: str | None) -> dict:
    """What the ranks need to find each other on loopback (gloo otherwise guesses an interface from the
    host name, which the jail cannot resolve); NCCL does the same over its socket bootstrap."""
    env = {"GLOO_SOCKET_IFNAME": LOOPBACK_IFNAME}
    if (device or "").startswith("cuda"):
        env["NCCL_SOCKET_IFNAME"] = LOOPBACK_IFNAME
    return env


def relaunch(nproc: int, argv: list[str], device: str | None) -> int:
    """Run `python -m trainer.train ARGV` as `nproc` ranks under torchrun (a direct, trusted run) and return
    torchrun's exit status."""
    import subprocess

    env = {**os.environ, **rank_environment(device)}
    return subprocess.run(torchrun_argv(nproc, "trainer.train", argv), env=env).returncode


def sandbox_command(nproc: int, train_args: list[str], workdir, *, device: str,
                    threads: int) -> tuple[list[str], dict]:
    """(argv, extra environment) for `run_sandboxed` that trains under torchrun with `nproc` ranks, which
    share `threads` cores.

    torchrun is the sandbox's program; the guard runs it as a launcher (no audit hook: it must start the ranks
    and talk to them over loopback). Each rank is `python -m trainer.sandbox_guard WORKDIR -- -m trainer.train
    ...`, so the candidate's code only ever runs under the guard, with the sandbox's limits."""
    guarded = [str(workdir), "--", "-m", "trainer.train", *train_args]
    env = {"SANDBOX_LAUNCHER": "1", "OMP_NUM_THREADS": str(max(1, threads // nproc)), **rank_environment(device)}
    return torchrun_argv(nproc, "trainer.sandbox_guard", guarded), env


def sandbox_limits(fidelity, nproc: int) -> dict:
    """The limits of one sandbox holding `nproc` ranks: the fidelity's memory and the sandbox's default
    thread bound, each once per rank (the monitor sums them over the whole torchrun tree)."""
    return {"memory_mb": fidelity.memory_mb * nproc, "max_threads": THREADS_PER_RANK * nproc}
