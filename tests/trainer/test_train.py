"""Training on a CPU: the seed learns, runs repeat exactly, checkpoints load back, failures are reported."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from trainer.checkpoint import load_checkpoint, sha256
from trainer.data import validation_windows
from trainer.fidelity import get_fidelity
from trainer.layers import seed_program
from trainer.train import Trainer, load_data, lr_at, train


@pytest.fixture(scope="module")
def seed_run(tiny, data_cache, tmp_path_factory):
    """The seed trained once at the tiny fidelity (60 steps), shared by the tests below."""
    out = tmp_path_factory.mktemp("seed-run")
    return out, train(seed_program(), tiny, out, cache_dir=data_cache, progress=False, device="cpu")


def short(tiny_overrides, **more):
    return get_fidelity("smoke", {**tiny_overrides, "steps": 6, "warmup_steps": 2, **more})


def test_the_seed_learns(seed_run, tiny):
    out, result = seed_run
    assert result["status"] == "ok", result.get("reason")
    assert result["backend"] == "cpu" and result["device"] == "cpu" and result["steps_done"] == tiny.steps
    assert math.isfinite(result["val_loss"])
    assert result["val_loss_start"] == pytest.approx(math.log(512), abs=0.3)  # uniform over the vocabulary
    assert result["val_loss"] < result["val_loss_start"] - 0.5
    assert [step for step, _ in result["val_curve"]] == [0, 30, 60]
    assert result["loss_curve"][0][0] == 0 and result["loss_curve"][-1][0] == tiny.steps - 1
    assert result["loss_curve"][-1][1] < result["loss_curve"][0][1]
    assert result["tokens"] == tiny.steps * tiny.tokens_per_step and result["tokens_per_s"] > 0
    assert result["params"] > result["non_embedding_params"] > 0 and result["mixer_params_per_layer"] > 0
    assert json.loads((out / "result.json").read_text()) == result


def test_same_seed_same_curve_other_seed_other_curve(tiny_overrides, data_cache, tmp_path):
    fidelity = short(tiny_overrides)
    runs = [train(seed_program(), fidelity, tmp_path / f"run{i}", cache_dir=data_cache, progress=False, seed=seed,
                  device="cpu") for i, seed in enumerate([7, 7, 8])]
    assert all(r["status"] == "ok" for r in runs)
    assert runs[0]["loss_curve"] == runs[1]["loss_curve"] and runs[0]["val_curve"] == runs[1]["val_curve"]
    assert runs[0]["loss_curve"] != runs[2]["loss_curve"]
    assert runs[0]["val_loss"] != runs[2]["val_loss"]


def test_the_checkpoint_loads_back_with_the_same_validation_loss(seed_run, tiny, data_cache):
    out, result = seed_run
    assert result["checkpoint"] == str((out / "checkpoint").resolve())
    checkpoint = load_checkpoint(out / "checkpoint")
    assert checkpoint.config["program_sha256"] == sha256(seed_program())
    assert checkpoint.config["fidelity"] == "smoke" and checkpoint.config["seed"] == 0
    assert (out / "checkpoint" / "program.py").read_text() == seed_program()
    tokens = load_data(tiny, data_cache).data
    assert checkpoint.tokenizer.to_str() == tokens.tokenizer.to_str()
    windows = validation_windows(tokens.val, tiny.seq_len, tiny.eval_batches * tiny.micro_batch_size)
    with torch.no_grad():
        loss = sum(checkpoint.model(b, labels=b).loss.item() * len(b) for b in windows.split(tiny.micro_batch_size))
    assert loss / len(windows) == pytest.approx(result["val_loss"], rel=1e-5)
    # Logits: a second load gives the same; they give the same loss as the chunked computation.
    again = load_checkpoint(out / "checkpoint")
    with torch.no_grad():
        first = checkpoint.model(windows[:2], labels=windows[:2], return_logits=True)
        second = again.model(windows[:2])
    assert first.logits.shape == (2, tiny.seq_len, checkpoint.model.config.vocab_size)
    torch.testing.assert_close(first.logits, second.logits, rtol=0, atol=0)
    with torch.no_grad():
        chunked = checkpoint.model(windows[:2], labels=windows[:2]).loss
    torch.testing.assert_close(first.loss, chunked, rtol=1e-5, atol=1e-5)


def test_a_checkpoint_whose_program_changed_is_refused(seed_run, tmp_path):
    out, _ = seed_run
    copy = shutil.copytree(out / "checkpoint", tmp_path / "checkpoint")
    (copy / "program.py").write_text(seed_program().replace("num_heads: int = 4", "num_heads: int = 8"))
    with pytest.raises(ValueError, match="does not match the sha256 recorded in its config"):
        load_checkpoint(copy)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_checkpoint(tmp_path / "empty")


def test_a_nan_loss_stops_training_with_the_reason(program, tiny_overrides, data_cache, tmp_path):
    result = train(program("nan_loss"), short(tiny_overrides), tmp_path, cache_dir=data_cache, progress=False,
                   device="cpu")
    assert result["status"] == "failed" and result["reason"] == "the training loss became nan at step 0"
    assert result["steps_done"] == 1 and result["val_loss"] is None
    assert "checkpoint" not in result and not (tmp_path / "checkpoint").exists()


def test_a_crash_is_reported_with_its_traceback(program, tiny_overrides, data_cache, tmp_path):
    result = train(program("crash_in_forward"), short(tiny_overrides), tmp_path, cache_dir=data_cache,
                   progress=False, device="cpu")
    assert result["status"] == "error" and result["reason"] == "RuntimeError: deliberate crash in forward"
    assert "in forward" in result["traceback"]
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "error"


def test_bfloat16_fidelity_autocasts_on_a_cpu(program, tiny_overrides, data_cache, tmp_path):
    assert not Trainer(seed_program(), short(tiny_overrides), device="cpu").autocast
    trainer = Trainer(seed_program(), short(tiny_overrides, dtype="bfloat16"), device="cpu")
    with trainer._context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    # A program that casts to bfloat16 itself fails in float32 and trains under bfloat16 autocast.
    fp32 = train(program("needs_bfloat16"), short(tiny_overrides, steps=3), tmp_path / "fp32",
                 cache_dir=data_cache, progress=False, device="cpu")
    assert fp32["status"] == "error" and "BFloat16" in fp32["reason"]
    bf16 = train(program("needs_bfloat16"), short(tiny_overrides, steps=3, dtype="bfloat16"), tmp_path / "bf16",
                 cache_dir=data_cache, progress=False, device="cpu")
    assert bf16["status"] == "ok" and math.isfinite(bf16["val_loss"])


def test_learning_rate_schedule_warms_up_holds_and_decays():
    fidelity = get_fidelity("smoke", {"steps": 100, "warmup_steps": 10, "lr": 1.0, "decay_fraction": 0.2,
                                      "min_lr_ratio": 0.1})
    assert lr_at(0, fidelity) == pytest.approx(0.1) and lr_at(9, fidelity) == pytest.approx(1.0)
    assert lr_at(50, fidelity) == lr_at(79, fidelity) == 1.0
    assert lr_at(90, fidelity) == pytest.approx(0.55)
    assert lr_at(99, fidelity) == pytest.approx(1 - 0.9 * 19 / 20)
    assert all(lr_at(s, fidelity) >= lr_at(s + 1, fidelity) for s in range(10, 99))


def test_the_command_line_trains_and_prints_a_summary(tiny_overrides, data_cache, tmp_path, capsys):
    from trainer.train import main

    program_file = tmp_path / "program.py"
    program_file.write_text(seed_program())
    settings = [f"{k}={v}" for k, v in {**tiny_overrides, "steps": 3}.items()]
    code = main(["--program", str(program_file), "--out", str(tmp_path / "out"), "--cache", str(data_cache),
                 "--device", "cpu", "--no-progress", "--set", *settings])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["status"] == "ok" and summary["checkpoint"].endswith("checkpoint")
