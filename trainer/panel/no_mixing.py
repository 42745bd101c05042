"""No mixing: the floor of the panel. Each position sees only itself; there is no memory.

    o_t = W_o (RMSNorm(silu(W_v x_t)) * silu(W_g x_t))     (RMSNorm per head)

A position-wise gated linear unit (GLU variants: Shazeer 2020, "GLU Variants Improve Transformer",
arXiv 2002.05202) with the panel's output path: per-head RMSNorm gated by a projection, then an
output projection. No paper proposes it as a token mixer; it is the control that every layer with
token mixing should beat on recall. It has no short convolution either, so it cannot see even its
neighbours. The value width is 5/3 of the hidden size so that its three projections hold as many
parameters as the seed DeltaNet's five (MAD compares layers at equal parameter count).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated


class DeltaNet(nn.Module):
    def __init__(
        self,
        hidden_size: int = 1024,
        num_heads: int = 4,
        expand_v: float = 5 / 3,
        layer_idx: int | None = None,
        norm_eps: float = 1e-5,
        **kwargs,
    ) -> None:
        super().__init__()
        self.hidden_size, self.num_heads, self.layer_idx = hidden_size, num_heads, layer_idx
        # Rounded to a multiple of the heads, so the per-head norm sees equal slices.
        self.head_v_dim = max(1, round(hidden_size * expand_v / num_heads))
        self.value_dim = self.head_v_dim * num_heads
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
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
        if attention_mask is not None:
            # Padding gets a zero gate, hence a zero output, as in the layers that do mix.
            hidden_states = hidden_states * attention_mask[:, -hidden_states.shape[1]:, None].to(hidden_states)
        v = rearrange(F.silu(self.v_proj(hidden_states)), "b t (h d) -> b t h d", d=self.head_v_dim)
        g = rearrange(self.g_proj(hidden_states), "b t (h d) -> b t h d", d=self.head_v_dim)
        o = self.o_proj(rearrange(self.o_norm(v, g), "b t h d -> b t (h d)"))
        return o, None, past_key_values
