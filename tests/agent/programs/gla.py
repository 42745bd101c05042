"""Gated linear attention (GLA) written as a layer program, in plain PyTorch.

Each head keeps a memory S (d_k x d_v) decayed per key channel by a data-dependent gate:
S_t = diag(a_t) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t, with log a_t = logsigmoid(W x_t) / 16.
Computed chunkwise: inside a chunk the pairwise decays exp(G_i - G_j) (i >= j, so never above 1)
are formed explicitly; across chunks the memory is carried, so cost is linear in length.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from fla.modules import FusedRMSNormGated

CHUNK = 16
GATE_NORMALIZER = 16.0


def gla_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_a: torch.Tensor) -> torch.Tensor:
    """q, k, log_a: [B, H, T, Dk]; v: [B, H, T, Dv] -> o [B, H, T, Dv]."""
    b, h, t, dk = q.shape
    pad = (-t) % CHUNK
    if pad:
        q, k, v, log_a = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, log_a))
    n = (t + pad) // CHUNK
    q, k, v, log_a = (rearrange(x, "b h (n c) d -> b h n c d", c=CHUNK) for x in (q, k, v, log_a))
    G = log_a.cumsum(-2)
    causal = torch.tril(torch.ones(CHUNK, CHUNK, dtype=torch.bool, device=q.device))
    # decay[i, j, :] = exp(G_i - G_j) for j <= i; masked to zero above the diagonal before exp.
    diff = G[..., :, None, :] - G[..., None, :, :]
    decay = torch.where(causal[..., None], diff, torch.full_like(diff, float("-inf"))).exp()
    scores = torch.einsum("bhnid,bhnjd,bhnijd->bhnij", q, k, decay)
    intra = scores @ v
    state = q.new_zeros(b, h, dk, v.shape[-1])
    outs = []
    for i in range(n):
        inter = (q[:, :, i] * G[:, :, i].exp()) @ state
        outs.append(intra[:, :, i] + inter)
        last = G[:, :, i, -1:]
        state = state * last.exp().transpose(-1, -2) + (k[:, :, i] * (last - G[:, :, i]).exp()).transpose(-1, -2) @ v[:, :, i]
    o = torch.stack(outs, dim=2)
    return rearrange(o, "b h n c d -> b h (n c) d")[:, :, :t]


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, expand_k: float = 0.5, expand_v: float = 1.0,
                 layer_idx: int | None = None, norm_eps: float = 1e-5, **kwargs) -> None:
        super().__init__()
        self.hidden_size, self.num_heads, self.layer_idx = hidden_size, num_heads, layer_idx
        self.key_dim, self.value_dim = int(hidden_size * expand_k), int(hidden_size * expand_v)
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        # Low-rank gate projection, as in the GLA paper.
        self.gk_proj = nn.Sequential(nn.Linear(hidden_size, 16, bias=False), nn.Linear(16, self.key_dim, bias=True))
        self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.g_norm = FusedRMSNormGated(self.head_v_dim, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, past_key_values=None,
                use_cache: bool | None = False, output_attentions: bool | None = False, **kwargs):
        def heads(x: torch.Tensor, d: int) -> torch.Tensor:
            return rearrange(x, "b t (h d) -> b h t d", d=d).float()

        q = heads(self.q_proj(hidden_states), self.head_k_dim) * self.head_k_dim ** -0.5
        k = heads(self.k_proj(hidden_states), self.head_k_dim)
        v = heads(self.v_proj(hidden_states), self.head_v_dim)
        log_a = heads(F.logsigmoid(self.gk_proj(hidden_states)) / GATE_NORMALIZER, self.head_k_dim)
        o = gla_chunked(q, k, v, log_a).to(hidden_states.dtype)
        gate = rearrange(self.g_proj(hidden_states), "b t (h d) -> b h t d", d=self.head_v_dim)
        o = rearrange(self.g_norm(o, gate), "b h t d -> b t (h d)")
        return self.o_proj(o), None, past_key_values
