"""Causal mean: the output at t is the gated mean of the values at positions 0..t.

    o_t = W_o (RMSNorm(m_t) * silu(W_g x_t)),   m_t = (1 / (t + 1)) sum_{s<=t} v_s     (RMSNorm per head)

Uniform attention over the past: linear attention (Katharopoulos et al. 2020, arXiv 2006.16236) with
constant feature maps, so that every key matches every query equally and the memory is a running
sum of the values. No paper proposes it as a layer; it is the panel's weakest mixer: it sees the
whole past but cannot address it (Zoology, Arora et al. 2023, arXiv 2312.04927, explains why recall
needs input-dependent addressing). Values pass through the same short convolution as in the seed,
so local access is equal across the panel; its decoding state is that tail, the running sum and
the count. The value width is 5/3 of the hidden size to match the seed DeltaNet's parameter count
(no query or key projections here).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange
from fla.modules import FusedRMSNormGated, ShortConvolution


class DeltaNet(nn.Module):
    def __init__(
        self,
        hidden_size: int = 1024,
        num_heads: int = 4,
        expand_v: float = 5 / 3,
        conv_size: int = 4,
        layer_idx: int | None = None,
        norm_eps: float = 1e-5,
        **kwargs,
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_heads, self.layer_idx = hidden_size, num_heads, layer_idx
        self.head_v_dim = max(1, round(hidden_size * expand_v / num_heads))
        self.value_dim = self.head_v_dim * num_heads
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.v_conv1d = ShortConvolution(self.value_dim, kernel_size=conv_size, activation="silu")
        self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.o_norm = FusedRMSNormGated(self.head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        use_cache: bool | None = False,
        output_attentions: bool | None = False,
        **kwargs,
    ) -> tuple[torch.Tensor, None, object]:
        batch, length, _ = hidden_states.shape
        if attention_mask is not None:
            present = attention_mask[:, -length:, None].to(hidden_states)
        else:
            present = hidden_states.new_ones(batch, length, 1)
        # Padding gets zero input (zero values, zero gate) and is not counted in the mean.
        hidden_states = hidden_states * present
        state = None
        if past_key_values is not None and len(past_key_values) > self.layer_idx:
            state = past_key_values[self.layer_idx]
        conv = state.get("conv_state") if state is not None else None
        v, conv = self.v_conv1d(self.v_proj(hidden_states), cache=conv, output_final_state=use_cache)
        # Sums in float32: a running sum over thousands of positions loses too much in bfloat16.
        sums, counts = v.float().cumsum(1), present.float().cumsum(1)
        if state is not None and state.get("recurrent_state") is not None:
            # The decoding state: the sum of the values so far and how many there were.
            past_sum, past_count = state["recurrent_state"]
            sums, counts = sums + past_sum[:, None], counts + past_count[:, None]
        if past_key_values is not None and use_cache:
            past_key_values.update(recurrent_state=(sums[:, -1], counts[:, -1]), conv_state=conv,
                                   layer_idx=self.layer_idx, offset=length)
        mean = sums / counts.clamp(min=1)
        mean = rearrange(mean.to(v.dtype), "b t (h d) -> b t h d", d=self.head_v_dim)
        g = rearrange(self.g_proj(hidden_states), "b t (h d) -> b t h d", d=self.head_v_dim)
        o = self.o_proj(rearrange(self.o_norm(mean, g), "b t h d -> b t (h d)"))
        return o, None, past_key_values
