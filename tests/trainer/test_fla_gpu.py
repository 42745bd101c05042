"""On CUDA, fla's real kernels and the CPU stand-ins agree, and the seed trains in bfloat16.

Skipped without a CUDA device and triton. Run with `pytest -m gpu tests/trainer`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from trainer import fla_cpu
from trainer.fidelity import get_fidelity
from trainer.layers import route_fla, seed_program
from trainer.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
                       reason="needs a CUDA device and triton"),
]


@pytest.fixture(scope="module")
def fla():
    """The real fla modules (stand-ins registered by earlier CPU tests are replaced)."""
    assert route_fla(use_kernels=True) == "fla"
    names = ["fla.ops.delta_rule", "fla.ops.gated_delta_rule", "fla.modules", "fla.modules.l2norm"]
    modules = {name.removeprefix("fla."): importlib.import_module(name) for name in names}
    assert not getattr(modules["modules"], "__cpu_stand_in__", False)
    return modules


def inputs(length, batch=2, heads=4, dk=64, dv=64, seed=0, gated=False):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device="cuda")

    x = {"q": randn(batch, length, heads, dk), "k": F.normalize(randn(batch, length, heads, dk), dim=-1),
         "v": randn(batch, length, heads, dv), "beta": torch.sigmoid(randn(batch, length, heads))}
    if gated:
        x["g"] = F.logsigmoid(randn(batch, length, heads) + 2)
    return x


def bf16(x: dict) -> dict:
    return {name: t.bfloat16() for name, t in x.items()}


def close(actual, expected, tol):
    torch.testing.assert_close(actual.float(), expected.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("length", [17, 64, 130, 1000])
def test_chunk_delta_rule_kernel_matches_the_stand_in(fla, length):
    x = bf16(inputs(length))
    initial = torch.randn(2, 4, 64, 64, device="cuda") * 0.1
    o, state = fla["ops.delta_rule"].chunk_delta_rule(**x, initial_state=initial, output_final_state=True,
                                                       use_qk_l2norm_in_kernel=True)
    o_ref, state_ref = fla_cpu.chunk_delta_rule(**x, initial_state=initial, output_final_state=True,
                                                use_qk_l2norm_in_kernel=True)
    close(o, o_ref, 3e-2)
    close(state, state_ref, 3e-2)


def test_packed_sequences_kernel_matches_the_stand_in(fla):
    x = bf16(inputs(200, batch=1, seed=1))
    cu_seqlens = torch.tensor([0, 17, 81, 200], device="cuda")
    o, states = fla["ops.delta_rule"].chunk_delta_rule(**x, cu_seqlens=cu_seqlens, output_final_state=True)
    o_ref, states_ref = fla_cpu.chunk_delta_rule(**x, cu_seqlens=cu_seqlens, output_final_state=True)
    close(o, o_ref, 3e-2)
    close(states, states_ref, 3e-2)


@pytest.mark.parametrize("length", [17, 130])
def test_chunk_gated_delta_rule_kernel_matches_the_stand_in(fla, length):
    x = bf16(inputs(length, seed=2, gated=True))
    x["g"] = x["g"].float()
    o, state = fla["ops.gated_delta_rule"].chunk_gated_delta_rule(**x, output_final_state=True)
    o_ref, state_ref = fla_cpu.chunk_gated_delta_rule(**x, output_final_state=True)
    close(o, o_ref, 3e-2)
    close(state, state_ref, 3e-2)


def test_delta_rule_gradients_agree(fla):
    x = inputs(130, seed=3)
    weight = torch.randn_like(x["v"])

    def grads(fn):
        leaves = {name: t.bfloat16().detach().requires_grad_(True) for name, t in x.items()}
        o, _ = fn(**leaves, use_qk_l2norm_in_kernel=True)
        (o.float() * weight).sum().backward()
        return [leaves[name].grad for name in ("q", "k", "v", "beta")]

    for ours, theirs in zip(grads(fla_cpu.chunk_delta_rule), grads(fla["ops.delta_rule"].chunk_delta_rule),
                            strict=True):
        scale = theirs.float().abs().max().item()
        close(ours / scale, theirs / scale, 3e-2)


@pytest.mark.parametrize("activation", [None, "silu"])
def test_short_convolution_kernel_matches_the_stand_in(fla, activation):
    torch.manual_seed(0)
    ours = fla_cpu.ShortConvolution(128, 4, activation=activation).cuda()
    theirs = fla["modules"].ShortConvolution(128, 4, activation=activation).cuda()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 70, 128, device="cuda")
    y, cache = ours(x[:, :50], output_final_state=True)
    y_ref, cache_ref = theirs(x[:, :50], output_final_state=True)
    close(y, y_ref, 1e-3)
    close(cache, cache_ref, 1e-3)
    cu_seqlens = torch.tensor([0, 9, 70], device="cuda")
    close(ours(x[:1], cu_seqlens=cu_seqlens)[0], theirs(x[:1], cu_seqlens=cu_seqlens)[0], 1e-3)


def test_norms_match_the_stand_ins(fla):
    x, g = torch.randn(3, 20, 64, device="cuda"), torch.randn(3, 20, 64, device="cuda")
    weight = torch.randn(64, device="cuda")
    for make in ("RMSNorm", "FusedRMSNormGated"):
        ours, theirs = getattr(fla_cpu, make)(64).cuda(), getattr(fla["modules"], make)(64).cuda()
        with torch.no_grad():
            ours.weight.copy_(weight)
            theirs.weight.copy_(weight)
        args = (x,) if make == "RMSNorm" else (x, g)
        close(ours(*args), theirs(*args), 1e-3)
    close(fla_cpu.l2norm(x), fla["modules.l2norm"].l2norm(x), 1e-3)


def test_the_seed_trains_on_cuda_in_bfloat16(fla, tiny_overrides, data_cache, tmp_path):
    fidelity = get_fidelity("smoke", {**tiny_overrides, "steps": 30})
    result = train(seed_program(), fidelity, tmp_path, cache_dir=data_cache, progress=False, device="cuda")
    assert result["status"] == "ok", result.get("reason")
    assert result["backend"] == "fla" and result["device"].startswith("cuda")
    assert math.isfinite(result["val_loss"]) and result["val_loss"] < result["val_loss_start"] - 0.5
    assert result["peak_memory_mb"] > 0 and (tmp_path / "checkpoint" / "model.safetensors").exists()
