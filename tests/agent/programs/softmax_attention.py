"""Causal softmax attention as a layer program: correct and causal, but quadratic in length."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, layer_idx: int | None = None, **kwargs) -> None:
        super().__init__()
        self.num_heads, self.layer_idx = num_heads, layer_idx
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, past_key_values=None,
                use_cache: bool | None = False, output_attentions: bool | None = False, **kwargs):
        q, k, v = rearrange(self.qkv(hidden_states), "b t (s h d) -> s b h t d", s=3, h=self.num_heads)
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        length = hidden_states.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        o = F.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.o_proj(rearrange(o, "b h t d -> b t (h d)")), None, past_key_values
