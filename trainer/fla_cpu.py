"""Pure PyTorch stand-ins for the parts of `fla` that layer programs import.

fla's Triton kernels need a GPU, and without `triton` even `import fla.modules` fails, so on a CPU
`trainer.layers.route_fla()` registers these functions and classes under fla's own module names
(`fla.modules`, `fla.modules.l2norm`, `fla.layers.utils`, `fla.models.utils`, `fla.ops.delta_rule`,
`fla.ops.gated_delta_rule`). Names, signatures and return values follow fla 0.6, so a program
written for fla runs unchanged. The delta-rule math is the one of fla's `naive.py` references:
a token-by-token recurrence is the definition; the chunked form computes the same thing faster.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- normalisation


def l2norm(x: torch.Tensor, eps: float = 1e-6, output_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x / ||x|| over the last dimension, computed in float32 like fla's kernel."""
    y = x.float() * torch.rsqrt(x.float().pow(2).sum(-1, keepdim=True) + eps)
    return y.to(output_dtype or x.dtype)


l2_norm = l2norm


class L2Norm(nn.Module):
    def __init__(self, eps: float = 1e-6, output_dtype: torch.dtype | None = None):
        super().__init__()
        self.eps, self.output_dtype = eps, output_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2norm(x, self.eps, self.output_dtype)


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, elementwise_affine: bool = True, bias: bool = False, eps: float = 1e-5,
                 device=None, dtype=None):
        super().__init__()
        self.hidden_size, self.eps, self.elementwise_affine = hidden_size, eps, elementwise_affine
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype)) if bias else None

    def _affine(self, y: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            y = y * self.weight.float()
        if self.bias is not None:
            y = y + self.bias.float()
        return y

    def forward(self, x, residual=None, prenorm: bool = False, residual_in_fp32: bool = False):
        if residual is not None:
            x = x + residual
        y = self._affine(_rms(x, self.eps)).to(x.dtype)
        return (y, x.float() if residual_in_fp32 else x) if prenorm else y


class FusedRMSNormGated(RMSNorm):
    """RMSNorm(x) * act(g): the output norm of DeltaNet-style layers, gated by a projection of the input."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, eps: float = 1e-5,
                 activation: str = "swish", device=None, dtype=None):
        super().__init__(hidden_size, elementwise_affine, False, eps, device, dtype)
        if activation not in ("swish", "silu", "sigmoid"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.activation = activation

    def forward(self, x, g, residual=None, prenorm: bool = False, residual_in_fp32: bool = False):
        if residual is not None:
            x = x + residual
        gate = torch.sigmoid(g.float()) if self.activation == "sigmoid" else F.silu(g.float())
        y = (self._affine(_rms(x, self.eps)) * gate).to(x.dtype)
        return (y, x) if prenorm else y


# ---------------------------------------------------------------- short convolution


class ShortConvolution(nn.Conv1d):
    """Depthwise causal convolution: y[t] = act(sum_w weight[w] * x[t - W + 1 + w]).

    The cache holds the last W inputs of each sequence, shape [N, D, W], as fla's does.
    """

    def __init__(self, hidden_size: int, kernel_size: int, bias: bool = False, activation: str | None = "silu",
                 backend: str | None = "triton", device=None, dtype=None, **kwargs):
        super().__init__(hidden_size, hidden_size, kernel_size, padding=0, groups=hidden_size, bias=bias,
                         device=device, dtype=dtype)
        if activation is not None and activation not in ("silu", "swish"):
            raise ValueError(f"Activation `{activation}` not supported yet.")
        self.hidden_size, self.activation, self.backend = hidden_size, activation, backend

    def _conv(self, x: torch.Tensor, cache: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        # x: [B, T, D] -> y [B, T, D], final state [B, D, W]
        width = self.kernel_size[0]
        x = x.transpose(1, 2)
        history = cache[..., 1:].to(x) if cache is not None else x.new_zeros(x.shape[0], x.shape[1], width - 1)
        full = torch.cat([history, x], dim=-1)
        y = F.conv1d(full, self.weight, self.bias, groups=self.hidden_size)
        if self.activation is not None:
            y = F.silu(y)
        state = full[..., -width:]
        if state.shape[-1] < width:
            state = F.pad(state, (width - state.shape[-1], 0))
        return y.transpose(1, 2), state

    def forward(self, x, residual=None, mask=None, cache=None, output_final_state: bool = False, cu_seqlens=None,
                chunk_indices=None, **kwargs):
        if mask is not None:
            if cu_seqlens is not None:
                raise ValueError("`mask` and `cu_seqlens` cannot be provided at the same time")
            x = x * mask.unsqueeze(-1).to(x)
        if cu_seqlens is None:
            y, state = self._conv(x, cache)
        else:
            # Packed sequences (B == 1): each segment starts from its own state.
            outs, states = [], []
            for n, (start, end) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist(), strict=False)):
                y_n, s_n = self._conv(x[:, start:end], None if cache is None else cache[n:n + 1])
                outs.append(y_n)
                states.append(s_n)
            y, state = torch.cat(outs, dim=1), torch.cat(states, dim=0)
        if residual is not None:
            y = y + residual
        return y, (state if output_final_state else None)

    def step(self, x, residual=None, cache=None, output_final_state: bool = False, cu_seqlens=None):
        return self.forward(x, residual=residual, cache=cache, output_final_state=output_final_state)


# ---------------------------------------------------------------- padding helpers (fla.layers.utils)


def get_unpad_data(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    lens = attention_mask.sum(-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(lens, dim=0, dtype=torch.int32), (1, 0))
    return indices, cu_seqlens, int(lens.max().item()) if lens.numel() else 0


def index_first_axis(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return x[indices]


def index_put_first_axis(values: torch.Tensor, indices: torch.Tensor, first_axis_dim: int) -> torch.Tensor:
    out = values.new_zeros(first_axis_dim, *values.shape[1:])
    return out.index_put((indices,), values)


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch_size: int, seq_len: int) -> torch.Tensor:
    out = index_put_first_axis(hidden_states, indices, batch_size * seq_len)
    return out.reshape(batch_size, seq_len, *out.shape[1:])


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor):
    indices, cu_seqlens, max_len = get_unpad_data(attention_mask)
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, max_len


# ---------------------------------------------------------------- cache (fla.models.utils)


class Cache:
    """Per-layer decoding state: `cache[layer_idx]` is a dict of the layer's states, as in fla's `Cache`.

    As in fla, `attn_state` (keys and values, [B, T, ...]) grows: each update appends along the
    sequence, optionally to the last `cache_kwargs["window_size"]` positions; the other states are
    replaced. Each layer counts the tokens it has seen.
    """

    def __init__(self, seen_tokens: int = 0):
        self.states: list[dict] = []
        self._seen: list[int] = []
        self._seen_tokens = seen_tokens

    def __getitem__(self, layer_idx: int) -> dict:
        return self.states[layer_idx]

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self):
        return iter(self.states)

    def _layer(self, layer_idx: int) -> dict:
        while len(self.states) <= layer_idx:
            self.states.append({})
            self._seen.append(self._seen_tokens)
        return self.states[layer_idx]

    def update(self, recurrent_state=None, attn_state=None, conv_state=None, ffn_state=None, layer_idx: int = 0,
               offset: int | None = 1, cache_kwargs: dict | None = None, **kwargs) -> dict:
        layer = self._layer(layer_idx)
        window = (cache_kwargs or {}).get("window_size")
        if attn_state is not None:
            if not isinstance(attn_state, (tuple, list)):
                raise ValueError("`attn_state` must be a tuple/list of tensors")
            self._seen[layer_idx] += attn_state[0].shape[1]
            cached = layer.get("attn_state")
            if cached is not None:
                attn_state = [torch.cat([old, new], dim=1) for old, new in zip(cached, attn_state, strict=False)]
            if window is not None:
                attn_state = [state[:, -window:].contiguous() for state in attn_state]
            layer["attn_state"] = tuple(attn_state)
        else:
            self._seen[layer_idx] += offset if offset is not None else 1
        state = {"recurrent_state": recurrent_state, "conv_state": conv_state, "ffn_state": ffn_state}
        layer.update({k: v for k, v in state.items() if v is not None})
        return layer

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        index = layer_idx or 0
        return self._seen[index] if index < len(self._seen) else 0

    @classmethod
    def from_legacy_cache(cls, past_key_values=None, seen_tokens: int = 0) -> Cache:
        cache = cls(seen_tokens)
        for layer_idx, state in enumerate(past_key_values or []):
            # Every key, as fla keeps it: a program may store states under names of its own.
            cache._layer(layer_idx).update(state or {})
        return cache


# ---------------------------------------------------------------- delta rule (fla.ops)


def _segments(cu_seqlens, total: int):
    if cu_seqlens is None:
        return None
    bounds = cu_seqlens.tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=False)) or [(0, total)]


def _gated_delta_chunk(q, k, v, beta, g, scale, state, chunk_size: int = 64):
    """Chunkwise (gated) delta rule in [B, H, T, D] layout, float32; returns (o, final state).

    Within a chunk, the WY form turns the sequential rank-1 updates into one triangular solve; across
    chunks the state is carried as in the recurrence. g (log decay per token) may be None.
    """
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    pad = (-t) % chunk_size
    if pad:
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        beta = F.pad(beta, (0, pad))
        g = F.pad(g, (0, pad)) if g is not None else None
    n = (t + pad) // chunk_size
    q, k, v = (x.reshape(b, h, n, chunk_size, -1) for x in (q * scale, k, v))
    beta = beta.reshape(b, h, n, chunk_size)
    # Cumulative log decay inside each chunk: position i sees the state decayed by exp(G_i).
    G = g.reshape(b, h, n, chunk_size).cumsum(-1) if g is not None else torch.zeros_like(beta)
    decay_ij = (G[..., :, None] - G[..., None, :])
    lower = torch.tril(torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device), -1)
    lower_eq = lower | torch.eye(chunk_size, dtype=torch.bool, device=q.device)
    decay_lower = torch.where(lower, decay_ij, torch.full_like(decay_ij, -math.inf)).exp()
    k_beta = k * beta[..., None]
    # T = (I + strictly_lower(diag(beta) K K^T * decay))^-1, applied to v and k as the WY representation.
    A = (k_beta @ k.transpose(-1, -2)) * decay_lower
    eye = torch.eye(chunk_size, dtype=q.dtype, device=q.device)
    T = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False, unitriangular=True)
    u = T @ (v * beta[..., None])
    w = T @ (k_beta * G.exp()[..., None])
    attn_mask = torch.where(lower_eq, decay_ij, torch.full_like(decay_ij, -math.inf)).exp()
    S = state
    outs = []
    for i in range(n):
        q_i, k_i = q[:, :, i], k[:, :, i]
        u_i = u[:, :, i] - w[:, :, i] @ S
        o_i = (q_i * G[:, :, i].exp()[..., None]) @ S + ((q_i @ k_i.transpose(-1, -2)) * attn_mask[:, :, i]) @ u_i
        outs.append(o_i)
        g_last = G[:, :, i, -1]
        k_decayed = k_i * (g_last[..., None] - G[:, :, i]).exp()[..., None]
        S = S * g_last.exp()[..., None, None] + k_decayed.transpose(-1, -2) @ u_i
    o = torch.stack(outs, dim=2).reshape(b, h, n * chunk_size, dv)[:, :, :t]
    return o, S


def _delta_rule(q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel, cu_seqlens,
                head_first: bool = False):
    """Shared driver: fla's [B, T, H, D] layout in and out, optional packed sequences and initial states."""
    if head_first:
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        beta = beta.transpose(1, 2) if beta is not None else None
        g = g.transpose(1, 2) if g is not None else None
    dtype = v.dtype
    if beta is None:
        beta = q.new_ones(q.shape[:3])
    if use_qk_l2norm_in_kernel:
        q, k = l2norm(q), l2norm(k)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    def to_bhtd(x):
        return (x.float().transpose(1, 2))
    q, k, v = map(to_bhtd, (q, k, v))
    beta = beta.float().transpose(1, 2)
    g = g.float().transpose(1, 2) if g is not None else None
    if beta.ndim == 4:  # per-channel beta is not part of this stand-in; reduce it like a headwise scalar
        raise NotImplementedError("headwise (vector) beta is not supported by the CPU delta rule")
    b, h, t, dk = q.shape
    segments = _segments(cu_seqlens, t)
    if segments is None:
        state = initial_state.float() if initial_state is not None else q.new_zeros(b, h, dk, v.shape[-1])
        o, final = _gated_delta_chunk(q, k, v, beta, g, scale, state)
    else:
        outs, finals = [], []
        for n, (start, end) in enumerate(segments):
            state = (initial_state[n:n + 1].float() if initial_state is not None
                     else q.new_zeros(1, h, dk, v.shape[-1]))
            piece = slice(start, end)
            o_n, s_n = _gated_delta_chunk(q[:, :, piece], k[:, :, piece], v[:, :, piece], beta[:, :, piece],
                                          g[:, :, piece] if g is not None else None, scale, state)
            outs.append(o_n)
            finals.append(s_n)
        o, final = torch.cat(outs, dim=2), torch.cat(finals, dim=0)
    o = o.transpose(1, 2).to(dtype)
    if head_first:
        o = o.transpose(1, 2)
    return o, (final if output_final_state else None)


def chunk_delta_rule(q, k, v, beta, scale=None, initial_state=None, output_final_state: bool = False,
                     use_qk_l2norm_in_kernel: bool = False, cu_seqlens=None, cu_seqlens_cpu=None,
                     head_first: bool = False, **kwargs):
    return _delta_rule(q, k, v, beta, None, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel,
                       cu_seqlens, head_first)


def fused_recurrent_delta_rule(q, k, v, beta=None, scale=None, initial_state=None, output_final_state: bool = False,
                               use_qk_l2norm_in_kernel: bool = False, cu_seqlens=None, head_first: bool = False,
                               **kwargs):
    return _delta_rule(q, k, v, beta, None, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel,
                       cu_seqlens, head_first)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state: bool = False,
                           use_qk_l2norm_in_kernel: bool = False, cu_seqlens=None, cu_seqlens_cpu=None,
                           head_first: bool = False, **kwargs):
    return _delta_rule(q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel,
                       cu_seqlens, head_first)


def fused_recurrent_gated_delta_rule(q, k, v, g, beta=None, scale=None, initial_state=None,
                                     output_final_state: bool = False, use_qk_l2norm_in_kernel: bool = False,
                                     cu_seqlens=None, head_first: bool = False, **kwargs):
    return _delta_rule(q, k, v, beta, g, scale, initial_state, output_final_state, use_qk_l2norm_in_kernel,
                       cu_seqlens, head_first)


fused_chunk_delta_rule = chunk_delta_rule
