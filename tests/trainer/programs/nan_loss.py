"""A layer whose output is NaN: training must stop at once with the reason."""

import torch.nn as nn


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int = 1, layer_idx: int | None = None, **kwargs):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        return self.proj(hidden_states) * float("nan"), None, None
