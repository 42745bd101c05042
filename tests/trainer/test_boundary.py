"""The model server: a candidate's logits come from a sandboxed child, and nothing else does."""

from __future__ import annotations

import pytest
import torch

from trainer.boundary import ModelFailed, SandboxedModel
from trainer.checkpoint import save_checkpoint, verify_checkpoint
from trainer.fidelity import get_fidelity
from trainer.jail import probe
from trainer.layers import load_layer_class, seed_program
from trainer.model import LM, LMConfig
from trainer.synthetic import SyntheticTasks
from trainer.trusted import measure, seal

FIDELITY = get_fidelity("synthetic", {"hidden_size": 32, "num_layers": 1, "eval_batches": 1})
RETURN = "        return o, None, past_key_values"


def sealed(tmp_path, program: str = seed_program()):
    """A sealed checkpoint of an untrained model, and the same model in this process (trusted: the seed)."""
    data = SyntheticTasks(FIDELITY.seq_len, eval_sequences=32)
    config = LMConfig.from_fidelity(FIDELITY, eos_token_id=data.eos_token_id)
    torch.manual_seed(0)
    model = LM(config, load_layer_class(seed_program(), name="reference")).eval()
    save_checkpoint(tmp_path / "child", model, program, None)
    return seal(tmp_path / "child", tmp_path / "sealed", program, FIDELITY, data, seed=0, device="cpu"), model, data


@pytest.fixture(autouse=True)
def _jail_or_weak(monkeypatch):
    if not probe().available:
        monkeypatch.setenv("SANDBOX_ISOLATION", "weak")


def test_logits_from_the_child_equal_the_model_run_here(tmp_path):
    checkpoint, model, _ = sealed(tmp_path)
    ids = torch.randint(0, 256, (3, 40))
    with torch.no_grad():
        expected = model(ids).logits
    with SandboxedModel(checkpoint, workdir=tmp_path / "server") as served:
        assert torch.allclose(served(ids), expected, atol=1e-5)
        first, second = served.gather(ids[:2], [(0, 5), (30, 40)])
        assert torch.allclose(first, expected[0, 0:5], atol=1e-5)
        assert torch.allclose(second, expected[1, 30:40], atol=1e-5)


def test_a_checkpoint_changed_after_sealing_is_refused(tmp_path):
    checkpoint, _, _ = sealed(tmp_path)
    verify_checkpoint(checkpoint)
    with open(checkpoint / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(ValueError, match="does not match the sha256"):
        verify_checkpoint(checkpoint)
    with pytest.raises(ModelFailed), SandboxedModel(checkpoint, workdir=tmp_path / "server") as served:
        served(torch.zeros(1, 4, dtype=torch.long))


def test_prints_do_not_break_the_protocol_and_errors_are_reported(tmp_path):
    noisy = seed_program().replace(RETURN, "        print('chatter ' * 100)\n"
                                           "        if length == 7:\n            raise RuntimeError('seven')\n" + RETURN)
    checkpoint, model, _ = sealed(tmp_path, noisy)
    ids = torch.randint(0, 256, (2, 9))
    with SandboxedModel(checkpoint, workdir=tmp_path / "server") as served:
        with torch.no_grad():
            assert torch.allclose(served(ids), model(ids).logits, atol=1e-5)
        with pytest.raises(ModelFailed, match="seven"):
            served(ids[:, :7])
        assert served(ids).shape == (2, 9, 256)  # it goes on answering after a failed request


def test_a_child_that_dies_is_a_model_failure_with_its_reason(tmp_path):
    dying = seed_program().replace(RETURN, "        import os\n        os._exit(3)\n" + RETURN)
    checkpoint, _, _ = sealed(tmp_path, dying)
    with pytest.raises(ModelFailed, match="stopped answering"), \
            SandboxedModel(checkpoint, workdir=tmp_path / "server") as served:
        served(torch.zeros(1, 4, dtype=torch.long))


def test_patching_the_loss_in_the_child_does_not_change_the_trusted_loss(tmp_path):
    checkpoint, _, data = sealed(tmp_path)
    honest = measure(checkpoint, FIDELITY, data, workdir=tmp_path / "judge")
    patched = seed_program() + "\nimport torch.nn.functional as _F\n_F.cross_entropy = lambda *a, **k: a[0].sum() * 0\n"
    faked, _, _ = sealed(tmp_path / "faked", patched)
    assert measure(faked, FIDELITY, data, workdir=tmp_path / "judge2")["val_loss"] == pytest.approx(
        honest["val_loss"], rel=1e-6)
    assert honest["val_loss"] > 4.0 and honest["probes"] >= 1 and 0 <= honest["score"] <= 1
