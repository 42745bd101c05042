"""Decoding with a cache, in process: the LM shell threads fla's Cache through every mixer, the seed and
the panel continue a sequence from their cache exactly, and the cache travels as plain tensors only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer import fla_cpu, layers
from trainer.layers import SEED_PROGRAM, load_layer_class
from trainer.model import LM, LMConfig
from trainer.state_codec import MAX_NODES_PER_LAYER, StateError, pack, unpack

PANEL = Path(layers.__file__).with_name("panel")
PROGRAMS = {"seed": SEED_PROGRAM, **{p.stem: p for p in sorted(PANEL.glob("*.py")) if not p.name.startswith("_")}}


pytestmark = pytest.mark.usefixtures("cpu_fla")  # tests/trainer/conftest.py


def _proposed(**genes) -> str:
    from agent.proposer import Genome, render

    return render(Genome(**genes))


# Programs the offline proposer writes (no FIR branch: its taps keep no decoding state).
PROPOSED = {"proposed_default": {}, "proposed_no_conv": {"conv_size": 0},
            "proposed_gated": {"forget_gate": True, "conv_size": 6, "feature_map": "elu1"},
            "proposed_half_heads": {"head_factor": 0.5, "output_gate": "sigmoid", "qk_temperature": True}}


def lm(name: str) -> LM:
    torch.manual_seed(0)
    config = LMConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, max_seq_len=80)
    source = _proposed(**PROPOSED[name]) if name in PROPOSED else PROGRAMS[name].read_text()
    layer = load_layer_class(source, name=f"decode_{name}", compile=False)
    return LM(config, layer).eval()


@pytest.mark.parametrize("name", sorted(PROGRAMS) + sorted(PROPOSED))
@torch.no_grad()
def test_continuing_from_the_sent_cache_gives_the_uncached_logits(name):
    model = lm(name)
    ids = torch.randint(0, 64, (2, 80), generator=torch.Generator().manual_seed(1))
    reference = model(ids).logits
    # A prefix that ends inside a chunk, a single token, then the rest; the cache crosses pack/unpack each time.
    pieces, cache, outputs, offset = [(0, 37), (37, 38), (38, 80)], fla_cpu.Cache(), [], 0
    for start, end in pieces:
        logits, cache = model.decode(ids[:, start:end], cache)
        outputs.append(logits)
        layout, blob = pack(cache)
        cache = fla_cpu.Cache.from_legacy_cache(unpack(layout, blob)[0], seen_tokens=end)
        offset = end
    assert offset == ids.shape[1]
    scale = reference.abs().max()
    assert float((torch.cat(outputs, dim=1) - reference).abs().max() / scale) < 1e-4, name


def test_the_seed_keeps_a_fixed_state_and_softmax_one_that_grows():
    sizes = {}
    for name in ("seed", "softmax_attention"):
        model = lm(name)
        for length in (10, 30):
            _, cache = model.decode(torch.zeros(1, length, dtype=torch.long), fla_cpu.Cache())
            sizes[name, length] = unpack(*pack(cache))[1] // 4
    hidden, layers_ = 32, 2
    # Seed: per head d_k x d_v (hidden^2 / heads over the heads), three convolution tails of width 4.
    assert sizes["seed", 10] == sizes["seed", 30] == layers_ * (hidden * hidden // 2 + 3 * hidden * 4)
    assert sizes["softmax_attention", 30] - sizes["softmax_attention", 10] == layers_ * 20 * 2 * hidden


def test_the_cpu_cache_appends_keys_and_values_as_flas_does():
    cache = fla_cpu.Cache()
    first = cache.update(attn_state=(torch.ones(1, 3, 4), torch.zeros(1, 3, 4)), layer_idx=0, offset=3)
    assert first["attn_state"][0].shape == (1, 3, 4)
    both = cache.update(attn_state=(torch.ones(1, 2, 4), torch.zeros(1, 2, 4)), layer_idx=0, offset=2)
    assert both["attn_state"][0].shape == (1, 5, 4) and cache.get_seq_length(0) == 5
    window = cache.update(attn_state=(torch.ones(1, 2, 4), torch.ones(1, 2, 4)), layer_idx=0,
                          cache_kwargs={"window_size": 4})
    assert window["attn_state"][1].shape == (1, 4, 4) and window["attn_state"][1][0, -1, 0] == 1
    again = fla_cpu.Cache.from_legacy_cache([{"recurrent_state": torch.ones(2), "extra": 1}], seen_tokens=7)
    assert again.get_seq_length(0) == 7 and again[0]["extra"] == 1


@pytest.mark.parametrize(("state", "complaint"), [
    ({"recurrent_state": 0.5}, "float"),
    ({"my_state": torch.ones(2)}, "keys"),
    ({"conv_state": (torch.ones(0, 5),)}, "empty"),
    ({"conv_state": [None] * MAX_NODES_PER_LAYER}, "more than"),
])
def test_only_a_bounded_nesting_of_tensors_may_be_sent(state, complaint):
    with pytest.raises(StateError, match=complaint):
        pack([state])


def test_a_layout_must_place_every_tensor_exactly_once():
    layout, blob = pack([{"recurrent_state": torch.ones(2, 2)}, None, {"conv_state": (torch.ones(3), None)}])
    states, size = unpack(layout, blob)
    assert states[1] is None and isinstance(states[2]["conv_state"], tuple) and size == 4 * 7
    with pytest.raises(StateError, match="does not place"):
        unpack([layout[0]], blob)
    with pytest.raises(StateError, match="named once"):
        unpack([layout[0], {"recurrent_state": layout[0]["recurrent_state"]}], blob)
    with pytest.raises(StateError, match="safetensors"):
        unpack(layout, b"not a state")
