"""RetNet retention (Sun et al. 2023, "Retentive Network", arXiv 2307.08621).

    S_t = gamma_h S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t,   gamma_h = 1 - 2^(-5-h) for head h

A fixed exponential decay per head, the same for every input (no data-dependent gate); heads span
memories of about 32, 64, 128, ... tokens. The output goes through a per-head RMSNorm gated by a
swish projection (the paper's GroupNorm and swish gate). The paper's xPos rotation of q and k is
left out: the decay already orders positions, and every member of the panel gets the same local
positional access, the seed's short convolutions on q, k and v. Computed chunkwise: the decays
within a chunk of 64 as a matrix, a decayed memory across chunks, every exponent <= 0. With a cache
it keeps the memory S and the convolutions' tails.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated, ShortConvolution

CHUNK = 64


def chunked_retention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_gamma: torch.Tensor) -> torch.Tensor:
    """q, k: [B, H, T, Dk], v: [B, H, T, Dv], log_gamma: [H] -> o_t = sum_{s<=t} gamma^(t-s) (q_t . k_s) v_s."""
    length = q.shape[2]
    size = min(CHUNK, length)
    pad = (-length) % size
    if pad:  # zeros after the end change nothing before it
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    q, k, v = (rearrange(x, "b h (n c) d -> b h n c d", c=size) for x in (q, k, v))
    chunks = q.shape[2]
    lg = log_gamma.to(q)[:, None, None]  # [H, 1, 1]
    pos = torch.arange(size, device=q.device, dtype=q.dtype)
    # gamma^(i-j) for j <= i; the clamp keeps exp away from positive exponents above the diagonal.
    lag = pos[:, None] - pos[None, :]
    decay = torch.where(lag >= 0, (lg * lag.clamp(min=0)).exp(), 0.0)  # [H, C, C]
    intra = ((q @ k.transpose(-1, -2)) * decay[:, None]) @ v
    # Each chunk's k^T v decayed to its last position, then summed into the memory at each chunk's start.
    to_end = (lg[..., 0] * (size - 1 - pos)).exp()  # [H, C]
    per_chunk = (k * to_end[:, None, :, None]).transpose(-1, -2) @ v
    idx = torch.arange(chunks, device=q.device, dtype=q.dtype)
    gap = idx[:, None] - 1 - idx[None, :]  # chunk n reads chunk m < n decayed over n-1-m whole chunks
    carry = torch.where(gap >= 0, (lg * size * gap.clamp(min=0)).exp(), 0.0)  # [H, N, N]
    before = torch.einsum("hnm,bhmkv->bhnkv", carry, per_chunk)
    from_start = (lg[..., 0] * (pos + 1)).exp()  # [H, C]
    o = intra + (q * from_start[:, None, :, None]) @ before
    return rearrange(o, "b h n c d -> b h (n c) d")[:, :, :length]


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
        q, k, v = (rearrange(x, "b t (h d) -> b h t d", d=self.head_dim).float() for x in (q, k, v))
        log_gamma = torch.tensor([math.log1p(-2.0 ** (-5 - h)) for h in range(self.num_heads)])
        o = chunked_retention(q * self.head_dim ** -0.5, k, v, log_gamma.to(q.device))
        if memory is not None or use_cache:
            lg = log_gamma.to(q)[:, None]  # [H, 1]
            steps = torch.arange(1, q.shape[2] + 1, device=q.device, dtype=q.dtype)
            if memory is not None:  # the memory of the context before, decayed to each position
                o = o + ((q * self.head_dim ** -0.5) * (lg * steps).exp()[..., None]) @ memory
            if use_cache:
                written = (k * (lg * (steps.flip(0) - 1)).exp()[..., None]).transpose(-1, -2) @ v
                before = memory * (lg[..., 0] * q.shape[2]).exp()[:, None, None] if memory is not None else 0
                memory = before + written
        if past_key_values is not None and use_cache:
            past_key_values.update(recurrent_state=memory, conv_state=(conv_q, conv_k, conv_v),
                                   layer_idx=self.layer_idx, offset=hidden_states.shape[1])
        g = rearrange(self.g_proj(hidden_states), "b t (h d) -> b h t d", d=self.head_dim)
        o = self.o_proj(rearrange(self.o_norm(o.to(hidden_states.dtype), g), "b h t d -> b t (h d)"))
        return o, None, past_key_values
