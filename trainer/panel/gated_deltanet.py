"""Gated DeltaNet (Yang et al. 2025, "Gated Delta Networks: Improving Mamba2 with Delta Rule",
arXiv 2412.06464).

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,   o_t = S_t^T q_t

The seed's delta rule with a scalar, data-dependent decay per head in Mamba2's parametrisation:
log alpha_t = -exp(A_log) * softplus(W_a x_t + dt_bias), initialised as in fla (A ~ U(0, 16), dt
log-uniform in [0.001, 0.1]). beta_t is a per-head sigmoid gate; q and k are L2-normalised in the
kernel. The output goes through a per-head RMSNorm gated by a projection. The layout is the seed's
(key and value widths equal to the hidden size; the paper widens values), so the memory has the
seed's size. Training uses fla's chunkwise kernel (a PyTorch equivalent on a CPU). With a cache it
keeps, as the seed does, the memory S and the convolutions' tails.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.layers.utils import get_unpad_data, index_first_axis, pad_input
from fla.modules import FusedRMSNormGated, ShortConvolution
from fla.ops.gated_delta_rule import chunk_gated_delta_rule


class DeltaNet(nn.Module):
    def __init__(
        self,
        hidden_size: int = 1024,
        num_heads: int = 4,
        conv_size: int = 4,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
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
        self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.a_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.q_conv1d = ShortConvolution(hidden_size, kernel_size=conv_size, activation="silu")
        self.k_conv1d = ShortConvolution(hidden_size, kernel_size=conv_size, activation="silu")
        self.v_conv1d = ShortConvolution(hidden_size, kernel_size=conv_size, activation="silu")
        self.A_log = nn.Parameter(torch.empty(num_heads).uniform_(0, 16).log())
        dt = torch.exp(torch.rand(num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        # Inverse of softplus, so that softplus(dt_bias) = dt when W_a x = 0.
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log._no_weight_decay = self.dt_bias._no_weight_decay = True
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
        batch, length, _ = hidden_states.shape
        # Padded batches run as one packed sequence, so padding never enters the memory (as in the seed).
        cu_seqlens, indices = None, None
        if attention_mask is not None:
            indices, cu_seqlens, _ = get_unpad_data(attention_mask[:, -length:])
            hidden_states = index_first_axis(rearrange(hidden_states, "b s d -> (b s) d"), indices).unsqueeze(0)
        state = None
        if past_key_values is not None and len(past_key_values) > self.layer_idx:
            state = past_key_values[self.layer_idx]
        conv_q, conv_k, conv_v = state["conv_state"] if state is not None and state.get("conv_state") else (None,) * 3
        q, conv_q = self.q_conv1d(self.q_proj(hidden_states), cache=conv_q, output_final_state=use_cache,
                                  cu_seqlens=cu_seqlens)
        k, conv_k = self.k_conv1d(self.k_proj(hidden_states), cache=conv_k, output_final_state=use_cache,
                                  cu_seqlens=cu_seqlens)
        v, conv_v = self.v_conv1d(self.v_proj(hidden_states), cache=conv_v, output_final_state=use_cache,
                                  cu_seqlens=cu_seqlens)
        q, k, v = (rearrange(x, "... (h d) -> ... h d", d=self.head_dim) for x in (q, k, v))
        beta = self.b_proj(hidden_states).sigmoid()
        g = -self.A_log.float().exp() * F.softplus(self.a_proj(hidden_states).float() + self.dt_bias)
        initial = state.get("recurrent_state") if state is not None else None
        o, recurrent = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=initial, output_final_state=use_cache, use_qk_l2norm_in_kernel=True,
                                              cu_seqlens=cu_seqlens)
        if past_key_values is not None and use_cache:
            past_key_values.update(recurrent_state=recurrent, conv_state=(conv_q, conv_k, conv_v),
                                   layer_idx=self.layer_idx, offset=length)
        gate = rearrange(self.g_proj(hidden_states), "... (h d) -> ... h d", d=self.head_dim)
        o = self.o_proj(rearrange(self.o_norm(o, gate), "b t h d -> b t (h d)"))
        if attention_mask is not None:
            o = pad_input(o.squeeze(0), indices, batch, length)
        return o, None, past_key_values
