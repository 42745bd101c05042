"""Causal softmax attention (Vaswani et al. 2017, "Attention Is All You Need", arXiv 1706.03762).

    o_t = sum_{s<=t} softmax_s(q_t . k_s / sqrt(d)) v_s     (per head)

The panel's ceiling on recall: its state is the whole past (the KV cache), so its cost is quadratic
in length and the engineer's cost check flags it; it is a reference, not a candidate. No positional
embedding beyond the seed's short convolutions on q, k and v, which every member of the panel gets.
The output goes through the same per-head RMSNorm gated by a projection as the rest of the panel,
which also brings its parameters to the seed's. With a cache (decoding), keys and values of every
position read so far are kept in fla's `attn_state`, which grows by one K and one V per token, and
the convolutions' tails in `conv_state`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated, ShortConvolution


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
        length = hidden_states.shape[1]
        state = None
        if past_key_values is not None and len(past_key_values) > self.layer_idx:
            state = past_key_values[self.layer_idx]
        past = state["attn_state"][0].shape[1] if state is not None and state.get("attn_state") else 0
        total = past + length
        keep = None
        if attention_mask is not None:
            # The mask covers the cached positions too when it is that wide; missing columns are present.
            present = attention_mask[:, -total:].bool()
            present = F.pad(present, (total - present.shape[1], 0), value=True)
            # Zero input at padding keeps it out of the convolutions; the mask keeps it out of the keys.
            hidden_states = hidden_states * present[:, past:, None].to(hidden_states)
            causal = torch.ones(length, total, dtype=torch.bool, device=present.device).tril(past)
            # Every row keeps its own position, so a padded query never attends to nothing (a NaN).
            own = torch.arange(total, device=present.device) == torch.arange(past, total, device=present.device)[:, None]
            keep = (causal & present[:, None, :]) | own
        conv_q, conv_k, conv_v = state["conv_state"] if state is not None and state.get("conv_state") else (None,) * 3
        q, conv_q = self.q_conv1d(self.q_proj(hidden_states), cache=conv_q, output_final_state=use_cache)
        k, conv_k = self.k_conv1d(self.k_proj(hidden_states), cache=conv_k, output_final_state=use_cache)
        v, conv_v = self.v_conv1d(self.v_proj(hidden_states), cache=conv_v, output_final_state=use_cache)
        if past_key_values is not None and use_cache:
            # fla's cache appends these keys and values to the ones it holds, and returns them all.
            k, v = past_key_values.update(attn_state=(k, v), conv_state=(conv_q, conv_k, conv_v),
                                          layer_idx=self.layer_idx, offset=length)["attn_state"]
        elif past:
            k, v = (torch.cat([cached, new], dim=1) for cached, new in zip(state["attn_state"], (k, v), strict=True))
        q, k, v = (rearrange(x, "b t (h d) -> b h t d", d=self.head_dim) for x in (q, k, v))
        if keep is not None:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None])
        elif past:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(length, total, dtype=torch.bool,
                                                                              device=q.device).tril(past))
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        g = rearrange(self.g_proj(hidden_states), "b t (h d) -> b h t d", d=self.head_dim)
        o = self.o_proj(rearrange(self.o_norm(o, g), "b h t d -> b t (h d)"))
        return o, None, past_key_values
