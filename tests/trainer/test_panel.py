"""The reference panel (trainer/panel): known token mixers written as layer programs.

Each member must honour the layer contract as the seed does: it loads, trains inside the LM shell
with finite gradients, is causal and independent across the batch, treats an all-ones mask as no
mask and left padding as absent, passes the engineer's dynamic checks, and holds about as many
parameters as the seed DeltaNet (MAD compares layers at equal parameter count). The chunked forms of
linear attention, RetNet and GLA are checked against their token-by-token recurrence.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from agent.checks.dynamic import ProbeConfig, run_checks
from trainer import layers
from trainer.layers import load_layer_class, seed_program
from trainer.model import LM, LMConfig

PANEL = Path(layers.__file__).with_name("panel")
# The programs; the package's own modules (`__init__.py`) are not layers.
MEMBERS = sorted(path.stem for path in PANEL.glob("*.py") if not path.name.startswith("_"))
# Relative change (to the largest output) that counts as a difference; float32 rounding stays far below.
RTOL = 1e-5


pytestmark = pytest.mark.usefixtures("cpu_fla")  # tests/trainer/conftest.py


def layer_class(member: str) -> type[torch.nn.Module]:
    return load_layer_class((PANEL / f"{member}.py").read_text(), name=f"panel_{member}", compile=False)


def build(member: str, hidden_size: int = 64, num_heads: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return layer_class(member)(hidden_size=hidden_size, num_heads=num_heads, layer_idx=0, norm_eps=1e-5)


def lm(member: str) -> LM:
    torch.manual_seed(0)
    config = LMConfig(vocab_size=64, hidden_size=64, num_layers=2, num_heads=2, max_seq_len=128)
    return LM(config, layer_class(member))


def differs(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    return float((a - b).abs().max() / (scale.abs().max() + 1e-6))


def test_the_panel_has_its_seven_members():
    assert MEMBERS == sorted(["no_mixing", "causal_mean", "linear_attention", "retnet", "gla", "gated_deltanet",
                              "softmax_attention"])


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize(("hidden", "heads"), [(64, 2), (128, 4)])
def test_parameters_within_15_percent_of_the_seed(member, hidden, heads):
    seed = load_layer_class(seed_program(), name="panel_seed", compile=False)
    expected = sum(p.numel() for p in seed(hidden_size=hidden, num_heads=heads).parameters())
    count = sum(p.numel() for p in build(member, hidden, heads).parameters())
    assert abs(count / expected - 1) <= 0.15, f"{member}: {count} parameters, the seed has {expected}"


@pytest.mark.parametrize("member", MEMBERS)
def test_lm_trains_with_finite_gradients_everywhere(member):
    model = lm(member).train()
    tokens = torch.randint(0, 64, (2, 128), generator=torch.Generator().manual_seed(0))
    loss = model(tokens, labels=tokens).loss
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("length", [17, 64, 128])
@torch.no_grad()
def test_causal(member, length):
    model = lm(member).eval()
    tokens = torch.randint(0, 64, (2, length), generator=torch.Generator().manual_seed(length))
    reference = model(tokens).logits
    # Chunk boundaries (8, 16, 64) and positions inside chunks.
    for t in sorted({0, 7, 8, 15, 16, 37, 63, 64, 100} & set(range(length - 1))):
        changed = tokens.clone()
        changed[:, t + 1:] = (tokens[:, t + 1:] + 1 + torch.arange(length - t - 1)) % 64
        out = model(changed).logits
        assert differs(out[:, :t + 1], reference[:, :t + 1], reference) <= RTOL, f"changing tokens after {t} leaks"
        assert differs(out[:, t + 1:], reference[:, t + 1:], reference) > RTOL  # the change does reach the output


@pytest.mark.parametrize("member", MEMBERS)
@torch.no_grad()
def test_batch_independent(member):
    layer = build(member).eval()
    x = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    together = layer(x)[0]
    for i in range(3):
        assert differs(layer(x[i:i + 1])[0][0], together[i], together) <= RTOL, f"sample {i} depends on the batch"


@pytest.mark.parametrize("member", MEMBERS)
@torch.no_grad()
def test_all_ones_mask_is_no_mask_and_left_padding_is_absent(member):
    layer = build(member).eval()
    x = torch.randn(2, 40, 64, generator=torch.Generator().manual_seed(2))
    plain, _, cache = layer(x)
    assert cache is None
    assert differs(layer(x, attention_mask=torch.ones(2, 40, dtype=torch.long))[0], plain, plain) <= RTOL
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[0, :9] = 0
    padded = layer(x, attention_mask=mask)[0]
    alone = layer(x[:1, 9:])[0]
    assert differs(padded[0, 9:], alone[0], alone) <= RTOL, "left padding changes the real tokens' outputs"
    assert differs(padded[1], plain[1], plain) <= RTOL


def recurrence(q, k, v, log_decay):
    """The definition, token by token: S_t = diag(exp(log_decay_t)) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t."""
    state = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
    out = []
    for t in range(q.shape[2]):
        state = state * log_decay[:, :, t, :, None].exp() + k[:, :, t, :, None] * v[:, :, t, None, :]
        out.append((q[:, :, t, :, None] * state).sum(-2))
    return torch.stack(out, dim=2)


@pytest.mark.parametrize("member", ["linear_attention", "retnet", "gla"])
def test_chunked_forms_compute_the_recurrence(member):
    layer_class(member)
    module = sys.modules[f"layer_program_panel_{member}"]
    generator = torch.Generator().manual_seed(3)
    # 150 positions: several chunks of 8 and of 64, and a partial last chunk.
    q, k, v = (torch.randn(2, 3, 150, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    if member == "linear_attention":
        o, log_decay = module.chunked_linear_attention(q, k, v), torch.zeros_like(q)
    elif member == "retnet":
        log_gamma = torch.log1p(-(2.0 ** (-5 - torch.arange(3, dtype=torch.float64))))
        o, log_decay = module.chunked_retention(q, k, v, log_gamma), log_gamma[:, None, None].expand_as(q)
    else:
        log_decay = torch.nn.functional.logsigmoid(3 * torch.randn(q.shape, generator=generator, dtype=q.dtype))
        o = module.chunked_gla(q, k, v, log_decay)
    torch.testing.assert_close(o, recurrence(q, k, v, log_decay), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("member", MEMBERS)
def test_passes_the_engineers_dynamic_checks(member):
    # Smoke sizes, shortened: the cost check only needs to run (quadratic softmax is flagged, not failed).
    config = ProbeConfig(lengths=(17, 64), causal_length=130, causal_points=(0, 37, 63, 64), vocab_size=64,
                         cost_lengths=(64, 128, 256), cost_repeats=1)
    report = run_checks(layer_class(member), config)
    assert report["ok"], [c for c in report["checks"] if not c["ok"]]
    gradients = next(c for c in report["checks"] if c["name"] == "gradients")
    assert not gradients["unused"]
