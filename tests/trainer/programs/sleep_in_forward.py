"""A layer whose forward pass waits on nothing: it spends no CPU time, so only the wall clock stops it."""

import time

import torch.nn as nn


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int = 1, layer_idx: int | None = None, **kwargs):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        time.sleep(3600)
        return self.proj(hidden_states), None, None
