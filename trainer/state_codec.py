"""A decoding cache as plain tensors: what a model server may send of its state, and its size.

    layout, blob = pack(cache)                  # child: a Cache (or a list of per-layer dicts) -> JSON + bytes
    states, size = unpack(layout, blob)         # either side: [per-layer dict or None], bytes of tensor data

The tensors travel as safetensors, never as a pickle, so that the trusted side can read a state a
candidate wrote. The JSON layout gives the nesting: one entry per layer, null or an object keyed by
fla's state names, whose values are tensors, null, or lists and tuples of these, e.g.
    [{"recurrent_state": {"tensor": "0"}, "conv_state": {"tuple": [{"tensor": "1"}, ...]}}, ...]

Only the tensors are counted, so everything else is bounded: fla's four names as keys (a program
cannot write others through `Cache.update`), a few nodes and levels per layer, no empty tensors (a
shape of [0, n] would carry n for free). The structure can still carry a fixed number of bits,
never a context that grows with its length.
"""

from __future__ import annotations

import torch
from safetensors.torch import load, save

STATE_NAMES = ("recurrent_state", "attn_state", "conv_state", "ffn_state")
MAX_NODES_PER_LAYER = 64
MAX_DEPTH = 4
MAX_LAYERS = 1024


class StateError(ValueError):
    """A cache that is not plain tensors in the allowed nesting, or a layout that does not match its bytes."""


def _layers(cache) -> list:
    if isinstance(cache, torch.Tensor) or not hasattr(cache, "__iter__"):
        raise StateError(f"the cache is a {type(cache).__name__}, not a Cache or a list of per-layer states")
    layers = list(cache)
    if len(layers) > MAX_LAYERS:
        raise StateError(f"the cache has {len(layers)} layers, over the limit of {MAX_LAYERS}")
    return layers


class _Budget:
    """Counts a layer's nodes while walking it, so that structure alone cannot grow without limit."""

    def __init__(self, layer: int):
        self.layer, self.nodes = layer, 0

    def take(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES_PER_LAYER or depth > MAX_DEPTH:
            raise StateError(f"layer {self.layer}'s state nests deeper than {MAX_DEPTH} or holds more than "
                             f"{MAX_NODES_PER_LAYER} items")


def _encode(value, tensors: dict[str, torch.Tensor], budget: _Budget, depth: int):
    budget.take(depth)
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            raise StateError(f"layer {budget.layer}'s state holds an empty tensor of shape {tuple(value.shape)}")
        name = str(len(tensors))
        # A copy: safetensors refuses tensors that share storage, as slices of one projection do.
        tensors[name] = value.detach().to("cpu").contiguous().clone()
        return {"tensor": name}
    if isinstance(value, (list, tuple)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_encode(item, tensors, budget, depth + 1) for item in value]}
    raise StateError(f"layer {budget.layer}'s state holds a {type(value).__name__}; only tensors, None, lists "
                     "and tuples may be sent")


def pack(cache) -> tuple[list, bytes]:
    """The cache's per-layer states as (JSON layout, safetensors bytes); raises StateError."""
    tensors: dict[str, torch.Tensor] = {}
    layout = []
    for index, state in enumerate(_layers(cache)):
        if state is None:
            layout.append(None)
            continue
        if not isinstance(state, dict):
            raise StateError(f"layer {index}'s state is a {type(state).__name__}, not a dict")
        unknown = sorted(set(map(str, state)) - set(STATE_NAMES))
        if unknown:
            raise StateError(f"layer {index}'s state has keys {unknown}; allowed: {list(STATE_NAMES)}")
        budget = _Budget(index)
        layout.append({key: _encode(value, tensors, budget, 1) for key, value in state.items() if value is not None})
    return layout, save(tensors)


def _decode(node, tensors: dict[str, torch.Tensor], used: set[str], budget: _Budget, depth: int, device):
    budget.take(depth)
    if node is None:
        return None
    if isinstance(node, dict) and len(node) == 1:
        (kind, value), = node.items()
        if kind == "tensor" and isinstance(value, str) and value in tensors and value not in used:
            used.add(value)
            if tensors[value].numel() == 0:
                raise StateError(f"layer {budget.layer}'s state holds an empty tensor")
            return tensors[value].to(device)
        if kind in ("list", "tuple") and isinstance(value, list):
            items = [_decode(item, tensors, used, budget, depth + 1, device) for item in value]
            return tuple(items) if kind == "tuple" else items
    raise StateError(f"layer {budget.layer}'s layout has an entry {str(node)[:80]!r} that is not null, a tensor "
                     "named once, a list or a tuple")


def unpack(layout, blob: bytes, device: str | torch.device = "cpu") -> tuple[list, int]:
    """(per-layer states, bytes of tensor data) from pack's output; raises StateError on anything else."""
    try:
        tensors = load(blob)
    except Exception as err:  # safetensors raises its own error types on malformed bytes
        raise StateError(f"the state is not a safetensors file: {err}") from err
    if not isinstance(layout, list) or len(layout) > MAX_LAYERS:
        raise StateError(f"the state layout must be a list of at most {MAX_LAYERS} layers")
    used: set[str] = set()
    states = []
    for index, layer in enumerate(layout):
        if layer is None:
            states.append(None)
            continue
        if not isinstance(layer, dict) or not set(layer) <= set(STATE_NAMES):
            raise StateError(f"layer {index}'s layout must be an object keyed by {list(STATE_NAMES)}")
        budget = _Budget(index)
        states.append({key: _decode(node, tensors, used, budget, 1, device) for key, node in layer.items()})
    if used != set(tensors):
        raise StateError(f"the state holds {len(tensors) - len(used)} tensors its layout does not place")
    return states, sum(t.numel() * t.element_size() for t in tensors.values())
