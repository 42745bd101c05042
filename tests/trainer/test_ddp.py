"""DDP on a CPU: two gloo ranks under torchrun, in one sandbox jail, train as one process on the same batch.

The two-rank run goes the way a worker trains a candidate (`trainer.replicates.sandboxed_training`): the
whole torchrun tree in the kernel jail, the ranks meeting on the jail's loopback. About half a minute
on 2 cores, nearly all of it starting three Python processes that import torch.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors import safe_open

from trainer import distributed, jail
from trainer.checkpoint import load_checkpoint
from trainer.data import validation_windows
from trainer.fidelity import get_fidelity
from trainer.layers import seed_program
from trainer.replicates import sandboxed_training
from trainer.sandbox_guard import rank_environment
from trainer.train import load_data, train

# Two ranks each average the loss over half of the batch and DDP averages their gradients; one process
# averages over the whole batch at once. The sums run in another order, so float32 rounding (~1e-7
# relative) differs, and 20 AdamW steps carry it along: measured drift is below 1e-6. 1e-4 is two orders
# above that and two below what one step moves the loss (~3e-2 here), so the wrong batch on a rank, a
# rank training on its own or a missed gradient sync fails it.
TOLERANCE = 1e-4
STEPS = 20

needs_jail = pytest.mark.skipif(sys.platform != "linux" or not jail.probe().available,
                                reason=f"torchrun runs in the kernel jail, unavailable here: {jail.probe().reason}")


def checkpoint_layout(directory) -> dict:
    """What a reader of the checkpoint depends on: file names, config keys, tensor names and shapes."""
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        tensors = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    config = json.loads((directory / "config.json").read_text())
    return {"files": sorted(p.name for p in directory.iterdir()), "config": sorted(config), "tensors": tensors}


def validation_loss(directory, fidelity, cache) -> float:
    """The checkpoint's loss on the validation windows, computed here (the sandbox never sees them)."""
    model = load_checkpoint(directory).model
    windows = validation_windows(load_data(fidelity, cache).data.val, fidelity.seq_len, 16)
    with torch.no_grad():
        return model(windows, labels=windows).loss.item()


def test_each_rank_trains_on_its_own_slice_of_the_single_process_batch():
    counter = iter(range(1000))

    def draw(n):  # sequences numbered in the order a single process draws them
        rows = torch.tensor([[next(counter)] for _ in range(n)])
        return rows, rows

    global_batch, micro = 16, 4
    single = distributed.local_micro_batches(draw, global_batch, micro, distributed.World())
    assert [batch[:, 0].tolist() for batch, _ in single] == [list(range(i, i + 4)) for i in range(0, 16, 4)]
    seen = []
    for rank in range(2):
        counter = iter(range(1000))  # each rank draws from its own generator, seeded alike
        mine = distributed.local_micro_batches(draw, global_batch, micro, distributed.World(rank, 2, rank))
        assert all(len(batch) <= micro for batch, _ in mine)
        seen += [row for batch, _ in mine for row in batch[:, 0].tolist()]
    assert seen == list(range(16))  # disjoint, and together the whole single-process batch
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        distributed.local_micro_batches(draw, global_batch, micro, distributed.World(0, 3, 0))


def test_process_counts_and_the_launch_command(tmp_path):
    assert distributed.resolve_nproc(3, "cpu") == 3
    assert distributed.resolve_nproc(0, "cpu") == 1 and distributed.resolve_nproc(0, "cuda:1") == 1
    assert get_fidelity("verify").nproc == 0 and get_fidelity("smoke").nproc == 1
    argv, env = distributed.sandbox_command(2, ["--out", "."], tmp_path, device="cpu", threads=2)
    assert argv[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in argv
    assert argv[argv.index("--local-addr") + 1] == "127.0.0.1"  # the jail's host name resolves nowhere
    # Every rank runs the candidate under its own guard.
    assert argv[-7:] == ["trainer.sandbox_guard", str(tmp_path), "--", "-m", "trainer.train", "--out", "."]
    assert env["SANDBOX_LAUNCHER"] == "1" and env["GLOO_SOCKET_IFNAME"] == "lo" and env["OMP_NUM_THREADS"] == "1"
    # The ranks keep the launcher's limits and its private network namespace.
    limits = {"SANDBOX_MEMORY_MB": "100", "SANDBOX_PARENT_PID": "1"}
    ranks = rank_environment(limits, unshared_here=True)
    assert ranks["SANDBOX_MEMORY_MB"] == "100" and ranks["SANDBOX_NETWORK"] == "1" and ranks["SANDBOX_PARENT_PID"] != "1"


@needs_jail
@pytest.mark.timeout(300)
def test_two_gloo_ranks_in_the_jail_match_one_process(tiny_overrides, data_cache, tmp_path):
    overrides = {**tiny_overrides, "steps": STEPS, "warmup_steps": 5, "eval_every": 0, "log_every": 5}
    one = train(seed_program(), get_fidelity("smoke", overrides), tmp_path / "one", cache_dir=data_cache,
                progress=False, device="cpu")
    two_ranks = {**overrides, "nproc": 2}
    sandbox = sandboxed_training(seed_program(), get_fidelity("smoke", two_ranks), two_ranks, seed=0, device="cpu",
                                 cache=data_cache, workdir=tmp_path / "two", threads=2)
    assert sandbox.ok, f"{sandbox.reason}\n{sandbox.stderr_tail}"
    assert sandbox.isolation == "kernel"
    two = sandbox.result
    assert one["status"] == two["status"] == "ok" and (one["world_size"], two["world_size"]) == (1, 2)

    # The loss after N steps, and the whole curve, are those of one process on the same global batch.
    assert [step for step, _ in two["loss_curve"]] == [step for step, _ in one["loss_curve"]]
    assert two["loss_curve"][-1][0] == STEPS - 1
    for (step, loss_one), (_, loss_two) in zip(one["loss_curve"], two["loss_curve"], strict=True):
        assert loss_two == pytest.approx(loss_one, abs=TOLERANCE), f"step {step}"
    assert one["loss_curve"][-1][1] < one["loss_curve"][0][1] - 0.1  # it did learn: the match means something
    fidelity = get_fidelity("smoke", overrides)
    assert validation_loss(tmp_path / "two" / "checkpoint", fidelity, data_cache) == pytest.approx(
        validation_loss(tmp_path / "one" / "checkpoint", fidelity, data_cache), abs=TOLERANCE)

    # Only rank 0 wrote: one summary, one result.json and a checkpoint in the single-process format.
    assert sandbox.stdout_tail.count('"status"') == 1
    assert set(two) == set(one) and two["tokens"] == one["tokens"]
    assert checkpoint_layout(tmp_path / "two" / "checkpoint") == checkpoint_layout(tmp_path / "one" / "checkpoint")
