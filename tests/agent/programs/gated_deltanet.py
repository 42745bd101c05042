"""Gated DeltaNet written as a layer program: the delta rule with a data-dependent decay of the memory.

S <- exp(g) * S + beta * k (v - (exp(g) * S)^T k)^T, with g = -exp(A) * softplus(a(x) + dt_bias) per
head and token (the Mamba-2 style decay), through fla's chunk_gated_delta_rule.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated, ShortConvolution
from fla.ops.gated_delta_rule import chunk_gated_delta_rule


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, head_dim: int | None = None, expand_v: float = 1.0,
                 conv_size: int = 4, layer_idx: int | None = None, norm_eps: float = 1e-5, **kwargs) -> None:
        super().__init__()
        self.hidden_size, self.num_heads, self.layer_idx = hidden_size, num_heads, layer_idx
        self.head_k_dim = head_dim or hidden_size // num_heads
        self.head_v_dim = int(self.head_k_dim * expand_v)
        key_dim, value_dim = self.head_k_dim * num_heads, self.head_v_dim * num_heads
        self.q_proj = nn.Linear(hidden_size, key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, value_dim, bias=False)
        self.a_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)
        # Decay rates spread over heads, and dt initialised in [1e-3, 1e-1] as in Mamba-2.
        self.A_log = nn.Parameter(torch.log(torch.empty(num_heads).uniform_(1, 16)))
        dt = torch.exp(torch.rand(num_heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.q_conv1d = ShortConvolution(key_dim, kernel_size=conv_size, activation="silu")
        self.k_conv1d = ShortConvolution(key_dim, kernel_size=conv_size, activation="silu")
        self.v_conv1d = ShortConvolution(value_dim, kernel_size=conv_size, activation="silu")
        self.g_proj = nn.Linear(hidden_size, value_dim, bias=False)
        self.o_norm = FusedRMSNormGated(self.head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(value_dim, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, past_key_values=None,
                use_cache: bool | None = False, output_attentions: bool | None = False, **kwargs):
        q, _ = self.q_conv1d(self.q_proj(hidden_states))
        k, _ = self.k_conv1d(self.k_proj(hidden_states))
        v, _ = self.v_conv1d(self.v_proj(hidden_states))
        q, k = (rearrange(x, "b t (h d) -> b t h d", d=self.head_k_dim) for x in (q, k))
        v = rearrange(v, "b t (h d) -> b t h d", d=self.head_v_dim)
        beta = self.b_proj(hidden_states).sigmoid()
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(hidden_states).float() + self.dt_bias)
        o, _ = chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
        gate = rearrange(self.g_proj(hidden_states), "b t (h d) -> b t h d", d=self.head_v_dim)
        o = self.o_proj(rearrange(self.o_norm(o, gate), "b t h d -> b t (h d)"))
        return o, None, past_key_values
