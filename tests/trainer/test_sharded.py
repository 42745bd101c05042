"""FSDP on a CPU (`parallel=fsdp`, trainer.sharded): two gloo ranks under torchrun hold half the weights each
and take the single-process step.

The first test checks one step piece by piece (tests/trainer/sharded_ranks.py under plain torchrun): the
accumulated, reduce-scattered gradients, the clipping norm over the shards, the AdamW step on them and the
gathered state dict, each against a whole copy of the model. The second trains the way a worker does
(`trainer.replicates.sandboxed_training`: the torchrun tree in the kernel jail) and compares the loss curve,
the validation loss and the checkpoint with a single process. About 10 and 30 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.test_ddp import checkpoint_layout, needs_jail, validation_loss
from trainer import distributed
from trainer.fidelity import get_fidelity
from trainer.layers import seed_program
from trainer.replicates import sandboxed_training

ROOT = Path(__file__).resolve().parents[2]
# As for DDP (tests/trainer/test_ddp.py): the ranks sum the loss in another order than one process, and
# float32 rounding (~1e-7 relative) is all that differs: measured 2.4e-7 at most over 8 steps. 1e-4 is two
# orders above that and well below what one step moves the loss here (~7e-3; 6e-2 over the 8 steps), so a
# rank missing its gradient reduction, training on the wrong slice or stepping an unsynced shard fails it.
TOLERANCE = 1e-4
STEPS = 8


@pytest.mark.timeout(180)
def test_one_sharded_step_is_the_single_process_step(tmp_path):
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **distributed.rank_environment("cpu")}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", distributed.LOOPBACK,
            "--nproc-per-node", "2", str(Path(__file__).with_name("sharded_ranks.py")), str(out)]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(out.read_text())
    # The ranks hold shards (DTensors of half the elements); the tied head is still the embedding.
    assert figures["sharded"] and figures["tied"] and figures["gathered_tied"], figures
    assert figures["loss"] == pytest.approx(figures["loss_whole"], abs=1e-5)
    # Two micro-batches per rank accumulated without a sync, then one reduce-scatter: the full-batch gradient.
    assert figures["grad_difference"] < 1e-6 < 0.1 < figures["grad_largest"], figures
    # The norm is the whole model's, not a shard's (that would be ~1/sqrt(2) of it), and clips alike.
    assert figures["norm"] == pytest.approx(figures["norm_whole"], rel=1e-5) and figures["norm_whole"] > 0.1
    assert figures["clipped_difference"] < 1e-8
    # AdamW on the shards moves each weight as on the whole model (a step is ~3e-3 here).
    assert figures["weight_difference"] < 1e-5
    # The gathered state dict has the single-process keys, in order, and the trained values.
    assert figures["state_keys_match"] and figures["state_difference"] < 1e-5, figures


@needs_jail
@pytest.mark.timeout(300)
def test_two_fsdp_ranks_in_the_jail_match_one_process(tiny_overrides, data_cache, tmp_path):
    # Two micro-batches of 2 on each rank: gradient accumulation without a sync, then the reduce-scatter.
    overrides = {**tiny_overrides, "steps": STEPS, "warmup_steps": 2, "batch_size": 8, "micro_batch_size": 2,
                 "eval_every": 4, "log_every": 1}
    runs = {}
    for name, settings in ("one", overrides), ("two", {**overrides, "nproc": 2, "parallel": "fsdp"}):
        # Both in the jail: there the validation windows come from the training split (the sandbox never sees
        # the validation one), so the two validation curves are comparable.
        runs[name] = sandboxed_training(seed_program(), get_fidelity("smoke", settings), settings, seed=0,
                                        device="cpu", cache=data_cache, workdir=tmp_path / name, threads=2)
        assert runs[name].ok, f"{runs[name].reason}\n{runs[name].stderr_tail}"
    sandbox = runs["two"]
    one, two = runs["one"].result, sandbox.result
    assert one["status"] == two["status"] == "ok" and (one["world_size"], two["world_size"]) == (1, 2)
    assert (one["parallel"], two["parallel"]) == (None, "fsdp")  # it trained sharded, not as DDP replicas

    # The loss of every step, the last one included, is that of one process on the same global batch.
    assert [step for step, _ in two["loss_curve"]] == list(range(STEPS))
    for (step, loss_one), (_, loss_two) in zip(one["loss_curve"], two["loss_curve"], strict=True):
        assert loss_two == pytest.approx(loss_one, abs=TOLERANCE), f"step {step}"
    assert one["loss_curve"][-1][1] < one["loss_curve"][0][1] - 0.02  # it did learn: the match means something
    # Validation ran through the sharded model on both ranks, at the same steps and to the same values.
    assert [step for step, _ in two["val_curve"]] == [step for step, _ in one["val_curve"]] == [0, 4, STEPS]
    for (step, val_one), (_, val_two) in zip(one["val_curve"], two["val_curve"], strict=True):
        assert val_two == pytest.approx(val_one, abs=TOLERANCE), f"validation at step {step}"

    # Rank 0 alone wrote: one summary, and a checkpoint gathered whole, in the single-process format.
    assert sandbox.stdout_tail.count('"status"') == 1
    assert set(two) == set(one) and two["tokens"] == one["tokens"]
    assert checkpoint_layout(tmp_path / "two" / "checkpoint") == checkpoint_layout(tmp_path / "one" / "checkpoint")
    fidelity = get_fidelity("smoke", overrides)
    assert validation_loss(tmp_path / "two" / "checkpoint", fidelity, data_cache) == pytest.approx(
        validation_loss(tmp_path / "one" / "checkpoint", fidelity, data_cache), abs=TOLERANCE)
    curves = [(a, b) for key in ("loss_curve", "val_curve") for a, b in zip(one[key], two[key], strict=True)]
    drift = max(abs(a[1] - b[1]) for a, b in curves)
    print(f"loss of step {STEPS}: one process {one['loss_curve'][-1][1]:.7f}, FSDP {two['loss_curve'][-1][1]:.7f}; "
          f"largest difference over the training and validation curves {drift:.1e}")
