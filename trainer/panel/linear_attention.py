"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs", arXiv 2006.16236).

    S_t = S_{t-1} + phi(k_t) v_t^T,   o_t = S_t^T phi(q_t),   phi(x) = elu(x) + 1     (per head)

The paper divides o_t by phi(q_t)^T sum_{s<=t} phi(k_s). This program uses fla's form instead: no
normaliser, and a per-head RMSNorm on the output (gated by a projection, as in the seed). That norm
divides out any per-position, per-head scale, so the normaliser would change nothing but the
rounding; without it there is no denominator to divide by, and the sums are of positive terms that
grow at most linearly in length. Computed chunkwise: quadratic inside a chunk of 64, a running
memory across chunks, so cost is linear in length. q, k and v pass through the seed's short
convolutions, so local access is equal across the panel. With a cache it keeps the memory S and
the convolutions' tails.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated, ShortConvolution

CHUNK = 64


def chunked_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q, k: [B, H, T, Dk], v: [B, H, T, Dv] -> o [B, H, T, Dv], o_t = sum_{s<=t} (q_t . k_s) v_s."""
    length = q.shape[2]
    size = min(CHUNK, length)
    pad = (-length) % size
    if pad:  # zeros after the end change nothing before it
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    q, k, v = (rearrange(x, "b h (n c) d -> b h n c d", c=size) for x in (q, k, v))
    causal = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    intra = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0) @ v
    # The memory at the start of chunk n is the sum of k^T v over the chunks before it.
    per_chunk = k.transpose(-1, -2) @ v
    before = F.pad(per_chunk.cumsum(2), (0, 0, 0, 0, 1, 0))[:, :, :-1]
    o = intra + q @ before
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
        q, k = F.elu(q) + 1, F.elu(k) + 1
        o = chunked_linear_attention(q, k, v)
        if memory is not None:  # the memory of the context before: S_t = S_0 + sum_{s<=t} k_s v_s^T
            o = o + q @ memory
        if use_cache:
            memory = (memory if memory is not None else 0) + k.transpose(-1, -2) @ v
        o = o.to(hidden_states.dtype)
        if past_key_values is not None and use_cache:
            past_key_values.update(recurrent_state=memory, conv_state=(conv_q, conv_k, conv_v),
                                   layer_idx=self.layer_idx, offset=hidden_states.shape[1])
        g = rearrange(self.g_proj(hidden_states), "b t (h d) -> b h t d", d=self.head_dim)
        o = self.o_proj(rearrange(self.o_norm(o, g), "b h t d -> b t (h d)"))
        return o, None, past_key_values
