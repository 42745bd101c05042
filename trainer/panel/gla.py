"""Gated Linear Attention, GLA (Yang et al. 2024, "Gated Linear Attention Transformers with
Hardware-Efficient Training", arXiv 2312.06635).

    S_t = diag(alpha_t) S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t,   alpha_t = sigmoid(W_2 W_1 x_t)^(1/16)

A data-dependent decay per key channel, from a rank-16 projection; the 1/16 (log-decay =
logsigmoid / 16) keeps decays near 1 at initialisation, as in the paper. The output goes through a
per-head RMSNorm gated by a swish projection. q, k and v pass through the seed's short convolutions,
and the key width equals the seed's (the paper halves it), so the memory has the seed's size.
Computed chunkwise: inside a chunk of 8 the pairwise decays exp(G_i - G_j), j <= i, are formed
explicitly (exponents <= 0, never an exp of a growing cumulative sum); across chunks the memory is
carried, so cost is linear in length. With a cache it keeps that memory and the convolutions' tails.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated, ShortConvolution

# Small chunks: the pairwise decays cost C x Dk per position. On a 2-core CPU at B=32, 8 was the
# fastest measured (chunk 16 was 1.3x slower at T=128 and 2.5x at T=256, once it overflows the cache).
CHUNK = 8
GATE_LOW_RANK = 16
GATE_NORMALIZER = 16.0


def chunked_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_a: torch.Tensor) -> torch.Tensor:
    """q, k, log_a: [B, H, T, Dk], v: [B, H, T, Dv] -> o [B, H, T, Dv]; log_a <= 0 is the log decay."""
    return chunked_gla_with_state(q, k, v, log_a)[0]


def chunked_gla_with_state(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_a: torch.Tensor,
                           state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """chunked_gla from a memory `state` [B, H, Dk, Dv] (none: zeros); returns o and the memory after the last."""
    length = q.shape[2]
    size = min(CHUNK, length)
    pad = (-length) % size
    if pad:  # zeros after the end change nothing before it
        q, k, v, log_a = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, log_a))
    q, k, v, log_a = (rearrange(x, "b h (n c) d -> b h n c d", c=size) for x in (q, k, v, log_a))
    G = log_a.cumsum(-2)  # log decay from the chunk's start to each position, <= 0
    causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    # exp(G_i - G_j) for j <= i. Above the diagonal the exponent is positive and unbounded: clamped to 0
    # before exp, and those scores are masked out. A product and a sum beat an einsum here on a CPU.
    decay = (G[..., :, None, :] - G[..., None, :, :]).clamp(max=0).exp()
    scores = ((q[..., :, None, :] * k[..., None, :, :]) * decay).sum(-1).masked_fill(~causal, 0)
    intra = scores @ v
    last = G[..., -1:, :]  # log decay over the whole chunk
    q_in = q * G.exp()  # reads the memory left by earlier chunks, decayed to position i
    per_chunk = (k * (last - G).exp()).transpose(-1, -2) @ v  # this chunk's writes, decayed to its end
    # Padding after the end decays by exp(0) and writes zeros, so the memory after it is the one at the end.
    state = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1]) if state is None else state
    inter = []
    # unbind, not indexing: the backward of an index allocates a zero tensor of the full size per chunk.
    for q_n, last_n, write_n in zip(q_in.unbind(2), last.exp().unbind(2), per_chunk.unbind(2), strict=True):
        inter.append(q_n @ state)
        state = state * last_n.transpose(-1, -2) + write_n
    o = intra + torch.stack(inter, dim=2)
    return rearrange(o, "b h n c d -> b h (n c) d")[:, :, :length], state


class DeltaNet(nn.Module):
    def __init__(
        self,
        hidden_size: int = 1024,
        num_heads: int = 4,
        conv_size: int = 4,
        layer_idx: int | None = None,
        norm_eps: float = 1e-5,
        **kwargs,
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_heads, self.layer_idx = hidden_size, num_heads, layer_idx
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} must divide by {num_heads} heads")
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.q_conv1d = ShortConvolution(hidden_size, kernel_size=conv_size, activation="silu")
        self.k_conv1d = ShortConvolution(hidden_size, kernel_size=conv_size, activation="silu")
        self.v_conv1d = ShortConvolution(hidden_size, kernel_size=conv_size, activation="silu")
        self.gk_proj = nn.Sequential(nn.Linear(hidden_size, GATE_LOW_RANK, bias=False),
                                     nn.Linear(GATE_LOW_RANK, hidden_size, bias=True))
        self.g_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_norm = FusedRMSNormGated(self.head_dim, eps=norm_eps)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool | None = False,
        output_attentions: bool | None = False,
        **kwargs,
    ) -> tuple[torch.Tensor, None, object]:
        if attention_mask is not None:
            # Padding gets zero input, hence zero values: it adds nothing to the memory, and a zero gate.
            hidden_states = hidden_states * attention_mask[:, -hidden_states.shape[1]:, None].to(hidden_states)
        state = None
        if past_key_values is not None and len(past_key_values) > self.layer_idx:
            state = past_key_values[self.layer_idx]
        conv_q, conv_k, conv_v = state["conv_state"] if state is not None and state.get("conv_state") else (None,) * 3
        memory = state.get("recurrent_state") if state is not None else None
        q, conv_q = self.q_conv1d(self.q_proj(hidden_states), cache=conv_q, output_final_state=use_cache)
        k, conv_k = self.k_conv1d(self.k_proj(hidden_states), cache=conv_k, output_final_state=use_cache)
        v, conv_v = self.v_conv1d(self.v_proj(hidden_states), cache=conv_v, output_final_state=use_cache)
        log_a = F.logsigmoid(self.gk_proj(hidden_states)) / GATE_NORMALIZER
        q, k, v, log_a = (rearrange(x, "b t (h d) -> b h t d", d=self.head_dim).float() for x in (q, k, v, log_a))
        o, memory = chunked_gla_with_state(q * self.head_dim ** -0.5, k, v, log_a, memory)
        o = o.to(hidden_states.dtype)
        if past_key_values is not None and use_cache:
            past_key_values.update(recurrent_state=memory, conv_state=(conv_q, conv_k, conv_v),
                                   layer_idx=self.layer_idx, offset=hidden_states.shape[1])
        g = rearrange(self.g_proj(hidden_states), "b t (h d) -> b h t d", d=self.head_dim)
        o = self.o_proj(rearrange(self.o_norm(o, g), "b h t d -> b t (h d)"))
        return o, None, past_key_values
