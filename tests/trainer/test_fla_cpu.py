"""The CPU stand-ins for fla agree with fla's own naive references and with direct definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer import fla_cpu

LENGTHS = [1, 17, 63, 64, 65, 130]


def randn(*shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def delta_inputs(length: int, batch: int = 2, heads: int = 2, dk: int = 8, dv: int = 6, seed: int = 0,
                 gated: bool = False, dtype=torch.float32) -> dict:
    """fla layout [B, T, H, D]; unit-norm keys (the regime the delta rule is used in), beta in (0, 1)."""
    inputs = {
        "q": randn(batch, length, heads, dk, seed=seed, dtype=dtype),
        "k": F.normalize(randn(batch, length, heads, dk, seed=seed + 1, dtype=dtype), dim=-1),
        "v": randn(batch, length, heads, dv, seed=seed + 2, dtype=dtype),
        "beta": torch.sigmoid(randn(batch, length, heads, seed=seed + 3, dtype=dtype)),
    }
    if gated:
        inputs["g"] = F.logsigmoid(randn(batch, length, heads, seed=seed + 4, dtype=dtype) + 2)
    return inputs


def bhtd(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2)


def reference_delta(naive, q, k, v, beta, initial_state=None, scale=None):
    """fla's delta_rule_recurrence (layout [B, H, T, D], fixed scale d_k^-0.5) in fla's layout."""
    if scale is not None:
        q = q * scale * q.shape[-1] ** 0.5
    o, state = naive.delta_rule_recurrence(bhtd(q), bhtd(k), bhtd(v), bhtd(beta), initial_state=initial_state,
                                           output_final_state=True)
    return bhtd(o), state


def simple_recurrence(q, k, v, beta, g=None, scale=None, initial_state=None):
    """The (gated) delta rule token by token in float64: S <- a S + beta k (v - (a S)^T k)^T, o = S^T q scale."""
    q, k, v, beta = (x.double() for x in (q, k, v, beta))
    b, t, h, dk = q.shape
    scale = dk ** -0.5 if scale is None else scale
    state = initial_state.double() if initial_state is not None else q.new_zeros(b, h, dk, v.shape[-1])
    outs = []
    for i in range(t):
        if g is not None:
            state = state * g[:, i].double().exp()[..., None, None]
        k_i, v_i, b_i = k[:, i], v[:, i], beta[:, i]
        error = v_i - torch.einsum("bhk,bhkv->bhv", k_i, state)
        state = state + torch.einsum("bhk,bhv->bhkv", k_i, error * b_i[..., None])
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, i] * scale, state))
    return torch.stack(outs, dim=1), state


def close(actual, expected, tol=2e-5):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol)


# ---------------------------------------------------------------- delta rule outputs


@pytest.mark.parametrize("length", LENGTHS)
def test_chunk_delta_rule_matches_the_naive_recurrence(delta_naive, length):
    x = delta_inputs(length)
    o, state = fla_cpu.chunk_delta_rule(**x, output_final_state=True)
    o_ref, state_ref = reference_delta(delta_naive, **x)
    assert o.shape == x["v"].shape and o.dtype == x["v"].dtype
    close(o, o_ref)
    close(state, state_ref)


def test_scale_initial_state_and_final_state(delta_naive):
    x = delta_inputs(70, seed=5)
    initial = randn(2, 2, 8, 6, seed=9)
    o, state = fla_cpu.chunk_delta_rule(**x, scale=0.3, initial_state=initial, output_final_state=True)
    o_ref, state_ref = reference_delta(delta_naive, **x, initial_state=initial, scale=0.3)
    close(o, o_ref)
    close(state, state_ref)
    # Without output_final_state no state comes back; the initial state is used either way.
    o_only, none = fla_cpu.chunk_delta_rule(**x, scale=0.3, initial_state=initial)
    assert none is None
    close(o_only, o)
    assert not torch.allclose(fla_cpu.chunk_delta_rule(**x, scale=0.3)[0], o, atol=1e-3)


def test_running_in_two_pieces_with_the_state_equals_one_run():
    x = delta_inputs(100, seed=2)
    whole, final = fla_cpu.chunk_delta_rule(**x, output_final_state=True)
    first = {name: t[:, :37] for name, t in x.items()}
    rest = {name: t[:, 37:] for name, t in x.items()}
    o1, s1 = fla_cpu.chunk_delta_rule(**first, output_final_state=True)
    o2, s2 = fla_cpu.chunk_delta_rule(**rest, initial_state=s1, output_final_state=True)
    close(torch.cat([o1, o2], dim=1), whole)
    close(s2, final)


def test_qk_l2norm_in_kernel_normalises_queries_and_keys(delta_naive):
    x = delta_inputs(33, seed=3)
    x["q"], x["k"] = 3 * x["q"], 5 * randn(*x["k"].shape, seed=11)
    o, _ = fla_cpu.chunk_delta_rule(**x, use_qk_l2norm_in_kernel=True)
    normalised = {**x, "q": F.normalize(x["q"], dim=-1), "k": F.normalize(x["k"], dim=-1)}
    close(o, reference_delta(delta_naive, **normalised)[0])


def test_packed_sequences_equal_separate_runs():
    lengths = [5, 64, 1, 37]
    x = delta_inputs(sum(lengths), batch=1, seed=4)
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    initial = randn(len(lengths), 2, 8, 6, seed=12)
    o, states = fla_cpu.chunk_delta_rule(**x, initial_state=initial, output_final_state=True, cu_seqlens=cu_seqlens)
    assert states.shape == (len(lengths), 2, 8, 6)
    for n, (start, end) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist(), strict=True)):
        piece = {name: t[:, start:end] for name, t in x.items()}
        o_n, s_n = fla_cpu.chunk_delta_rule(**piece, initial_state=initial[n:n + 1], output_final_state=True)
        close(o[:, start:end], o_n)
        close(states[n:n + 1], s_n)


@pytest.mark.parametrize("length", [1, 17, 64, 130])
def test_chunk_gated_delta_rule_matches_the_naive_recurrence(gated_naive, length):
    x = delta_inputs(length, seed=6, gated=True)
    initial = randn(2, 2, 8, 6, seed=13)
    o, state = fla_cpu.chunk_gated_delta_rule(**x, scale=0.4, initial_state=initial, output_final_state=True)
    o_ref, state_ref = gated_naive.naive_recurrent_gated_delta_rule(
        x["q"], x["k"], x["v"], x["beta"], x["g"], scale=0.4, initial_state=initial, output_final_state=True)
    close(o, o_ref)
    close(state, state_ref)


def test_gated_packed_sequences_and_the_simple_recurrence():
    lengths = [70, 9]
    x = delta_inputs(sum(lengths), batch=1, seed=7, gated=True)
    o, states = fla_cpu.chunk_gated_delta_rule(**x, output_final_state=True, cu_seqlens=torch.tensor([0, 70, 79]))
    for n, piece in enumerate((slice(0, 70), slice(70, 79))):
        o_n, s_n = simple_recurrence(**{name: t[:, piece] for name, t in x.items()})
        close(o[:, piece], o_n)
        close(states[n:n + 1], s_n)


def test_fused_recurrent_variants_and_head_first_layout():
    x = delta_inputs(40, seed=8, gated=True)
    g = x.pop("g")
    o_ref, _ = simple_recurrence(**x)
    close(fla_cpu.fused_recurrent_delta_rule(**x)[0], o_ref)
    close(fla_cpu.fused_chunk_delta_rule(**x)[0], o_ref)
    close(fla_cpu.fused_recurrent_gated_delta_rule(**x, g=g)[0], simple_recurrence(**x, g=g)[0])
    # head_first: [B, H, T, D] in and out.
    heads_first = {name: t.transpose(1, 2) for name, t in x.items()}
    close(fla_cpu.chunk_delta_rule(**heads_first, head_first=True)[0], o_ref.transpose(1, 2))
    # beta=None means beta = 1.
    close(fla_cpu.fused_recurrent_delta_rule(x["q"], x["k"], x["v"])[0],
          simple_recurrence(**{**x, "beta": torch.ones_like(x["beta"])})[0])


def test_bfloat16_inputs_give_bfloat16_outputs_close_to_float32():
    x = delta_inputs(50, seed=10)
    o32, _ = fla_cpu.chunk_delta_rule(**x)
    o16, _ = fla_cpu.chunk_delta_rule(**{name: t.bfloat16() for name, t in x.items()})
    assert o16.dtype == torch.bfloat16
    torch.testing.assert_close(o16.float(), o32, rtol=5e-2, atol=5e-2)


# ---------------------------------------------------------------- delta rule gradients


def grads(fn, inputs: dict, names: list[str], weight: torch.Tensor, state_weight: torch.Tensor) -> list:
    leaves = {name: t.detach().clone().requires_grad_(True) for name, t in inputs.items()}
    o, state = fn(**leaves)
    ((o.double() * weight).sum() + (state.double() * state_weight).sum()).backward()
    return [leaves[name].grad for name in names]


@pytest.mark.parametrize("length", LENGTHS)
def test_delta_rule_gradients_match_the_naive_recurrence(delta_naive, length):
    x = delta_inputs(length, seed=20, dtype=torch.float64)
    x["initial_state"] = randn(2, 2, 8, 6, seed=21, dtype=torch.float64)
    names = ["q", "k", "v", "beta", "initial_state"]
    weight, state_weight = randn(2, length, 2, 6, seed=22, dtype=torch.float64), randn(2, 2, 8, 6, seed=23,
                                                                                      dtype=torch.float64)
    ours = grads(lambda **a: fla_cpu.chunk_delta_rule(**a, output_final_state=True), x, names, weight, state_weight)
    ref = grads(lambda **a: reference_delta(delta_naive, **a), x, names, weight, state_weight)
    simple = grads(lambda **a: simple_recurrence(**a), x, names, weight, state_weight)
    for name, a, b, c in zip(names, ours, ref, simple, strict=True):
        assert a is not None, name
        close(a, b, tol=1e-4)
        close(a, c, tol=1e-4)


@pytest.mark.parametrize("length", LENGTHS)
def test_gated_delta_rule_gradients_match_the_naive_recurrence(gated_naive, length):
    x = delta_inputs(length, seed=30, gated=True, dtype=torch.float64)
    names = ["q", "k", "v", "beta", "g"]
    weight, state_weight = randn(2, length, 2, 6, seed=31, dtype=torch.float64), randn(2, 2, 8, 6, seed=32,
                                                                                      dtype=torch.float64)
    ours = grads(lambda **a: fla_cpu.chunk_gated_delta_rule(**a, output_final_state=True), x, names, weight,
                 state_weight)
    ref = grads(lambda q, k, v, beta, g: gated_naive.naive_recurrent_gated_delta_rule(
        q, k, v, beta, g, output_final_state=True), x, names, weight, state_weight)
    for name, a, b in zip(names, ours, ref, strict=True):
        assert a is not None, name
        close(a, b, tol=1e-4)


# ---------------------------------------------------------------- short convolution


def direct_conv(x, weight, bias, activation):
    """y[b, t, d] = act(bias[d] + sum_w weight[d, w] * x[b, t - W + 1 + w, d]), zeros before the start."""
    batch, length, dim = x.shape
    width = weight.shape[-1]
    y = torch.zeros_like(x)
    for t in range(length):
        for w in range(width):
            source = t - width + 1 + w
            if source >= 0:
                y[:, t] += weight[:, 0, w] * x[:, source]
        if bias is not None:
            y[:, t] += bias
    return F.silu(y) if activation else y


def make_conv(dim=6, width=4, activation="silu", bias=False, seed=0):
    torch.manual_seed(seed)
    return fla_cpu.ShortConvolution(dim, kernel_size=width, activation=activation, bias=bias)


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("length", [1, 3, 17])
def test_short_convolution_is_the_causal_depthwise_loop(activation, length):
    conv = make_conv(activation=activation, bias=True)
    x = randn(2, length, 6, seed=length)
    y, state = conv(x)
    assert state is None
    close(y, direct_conv(x, conv.weight, conv.bias, activation), tol=1e-5)


@pytest.mark.parametrize("first", [1, 2, 3, 10])
def test_short_convolution_cache_continues_a_sequence(first):
    conv = make_conv()
    x = randn(2, first + 7, 6, seed=first)
    whole, _ = conv(x)
    y1, cache = conv(x[:, :first], output_final_state=True)
    assert cache.shape == (2, 6, 4)
    # The cache is the last W inputs, zero-padded on the left.
    padded = F.pad(x[:, :first].transpose(1, 2), (4, 0))
    close(cache, padded[..., -4:])
    y2, _ = conv(x[:, first:], cache=cache, output_final_state=True)
    close(torch.cat([y1, y2], dim=1), whole, tol=1e-6)
    # Token by token through step() gives the same outputs.
    cache, steps = None, []
    for t in range(x.shape[1]):
        y_t, cache = conv.step(x[:, t:t + 1], cache=cache, output_final_state=True)
        steps.append(y_t)
    close(torch.cat(steps, dim=1), whole, tol=1e-6)


def test_short_convolution_packed_sequences_and_mask():
    conv = make_conv(activation=None)
    lengths = [3, 8, 1]
    x = randn(1, sum(lengths), 6, seed=40)
    y, states = conv(x, cu_seqlens=torch.tensor([0, 3, 11, 12]), output_final_state=True)
    assert states.shape == (3, 6, 4)
    for n, (start, end) in enumerate([(0, 3), (3, 11), (11, 12)]):
        y_n, s_n = conv(x[:, start:end], output_final_state=True)
        close(y[:, start:end], y_n, tol=1e-6)
        close(states[n:n + 1], s_n, tol=1e-6)
    mask = torch.tensor([[1] * 5 + [0] * 7])
    close(conv(x, mask=mask)[0], conv(x * mask[..., None])[0], tol=1e-6)
    with pytest.raises(ValueError, match="cannot be provided at the same time"):
        conv(x, mask=mask, cu_seqlens=torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="not supported"):
        fla_cpu.ShortConvolution(6, 4, activation="relu")


def test_short_convolution_residual():
    conv = make_conv()
    x, residual = randn(1, 5, 6, seed=41), randn(1, 5, 6, seed=42)
    close(conv(x, residual=residual)[0], conv(x)[0] + residual, tol=1e-6)


# ---------------------------------------------------------------- norms


def rms(x, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def test_rmsnorm_formula_residual_and_prenorm():
    norm = fla_cpu.RMSNorm(8, bias=True, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(randn(8, seed=1))
        norm.bias.copy_(randn(8, seed=2))
    x, residual = randn(3, 5, 8, seed=3), randn(3, 5, 8, seed=4)
    close(norm(x), rms(x, 1e-5) * norm.weight + norm.bias, tol=1e-5)
    y, summed = norm(x, residual=residual, prenorm=True)
    close(summed, x + residual)
    close(y, rms(x + residual, 1e-5) * norm.weight + norm.bias, tol=1e-5)
    plain = fla_cpu.RMSNorm(8, elementwise_affine=False)
    assert plain.weight is None
    close(plain(x), rms(x, 1e-5), tol=1e-5)
    assert norm(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("activation, gate", [("swish", F.silu), ("silu", F.silu), ("sigmoid", torch.sigmoid)])
def test_fused_rmsnorm_gated_formula(activation, gate):
    norm = fla_cpu.FusedRMSNormGated(8, eps=1e-6, activation=activation)
    with torch.no_grad():
        norm.weight.copy_(randn(8, seed=5))
    x, g = randn(2, 7, 8, seed=6), randn(2, 7, 8, seed=7)
    close(norm(x, g), rms(x, 1e-6) * norm.weight * gate(g), tol=1e-5)
    with pytest.raises(ValueError, match="unsupported activation"):
        fla_cpu.FusedRMSNormGated(8, activation="gelu")


def test_l2norm():
    x = randn(4, 3, 16, seed=8, dtype=torch.float64)
    y = fla_cpu.l2norm(x)
    assert y.dtype == torch.float64
    close(y, x / x.norm(dim=-1, keepdim=True), tol=1e-5)
    close(fla_cpu.L2Norm()(x), y)
    assert fla_cpu.l2norm(x, output_dtype=torch.bfloat16).dtype == torch.bfloat16
    assert torch.isfinite(fla_cpu.l2norm(torch.zeros(2, 4))).all()  # eps keeps a zero vector finite


# ---------------------------------------------------------------- padding helpers and cache


def test_unpad_and_pad_round_trip():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    x = randn(3, 5, 4, seed=9)
    indices, cu_seqlens, max_len = fla_cpu.get_unpad_data(mask)
    assert cu_seqlens.tolist() == [0, 3, 8, 9] and max_len == 5
    assert indices.tolist() == [0, 1, 2, 5, 6, 7, 8, 9, 10]
    packed = fla_cpu.index_first_axis(x.reshape(15, 4), indices)
    close(packed, x[mask.bool()])
    restored = fla_cpu.pad_input(packed, indices, 3, 5)
    close(restored, x * mask[..., None])
    unpadded, indices2, cu2, max2 = fla_cpu.unpad_input(x, mask)
    close(unpadded, packed)
    assert indices2.tolist() == indices.tolist() and cu2.tolist() == cu_seqlens.tolist() and max2 == 5


def test_cache_keeps_states_per_layer_and_counts_tokens():
    cache = fla_cpu.Cache()
    state = torch.ones(1)
    cache.update(recurrent_state=state, conv_state=(1, 2, 3), layer_idx=0, offset=5)
    cache.update(recurrent_state=state * 2, layer_idx=1, offset=5)
    assert len(cache) == 2 and cache.get_seq_length() == 5
    assert cache[0]["conv_state"] == (1, 2, 3) and cache[1]["recurrent_state"].item() == 2
    cache.update(recurrent_state=state * 3, layer_idx=0, offset=1)
    assert cache.get_seq_length() == 6 and cache[0]["conv_state"] == (1, 2, 3)
    again = fla_cpu.Cache.from_legacy_cache(list(cache), seen_tokens=6)
    assert again.get_seq_length() == 6 and again[0]["recurrent_state"].item() == 3
