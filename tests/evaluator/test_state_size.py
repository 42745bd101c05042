"""The decoding state a candidate carries, measured by the trusted side from behaviour in fresh sandboxes:
the seed's is its fixed memory, softmax attention's grows by a key and a value per token, and a cache
that does not hold the context, or no cache at all, gets no size and a reason."""

from __future__ import annotations

import pytest
import torch

from evaluator.cost import cost_profile
from evaluator.state_size import state_comparison, state_profile
from trainer.checkpoint import save_checkpoint
from trainer.jail import probe
from trainer.layers import load_layer_class, seed_program
from trainer.model import LM, LMConfig
from trainer.panel import panel_programs

CONFIG = LMConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, max_seq_len=32)
READ_STATE = "            state = past_key_values[self.layer_idx]\n"
RETURN = "        return o, None, past_key_values"
# Writes its cache but never reads it back: every continuation starts from nothing.
FORGETFUL = seed_program().replace(READ_STATE, "            pass\n")
NO_CACHE = seed_program().replace(RETURN, "        return o, None, None")
# Keeps its real state in process memory, keyed by layer and tokens seen, and sends one float per layer: a
# continuation in the process that read the prefix would match, one in a fresh process cannot.
UPDATE = """            past_key_values.update(
                recurrent_state=recurrent,
                conv_state=(conv_q, conv_k, conv_v) if self.use_short_conv else None,
                layer_idx=self.layer_idx,
                offset=length,
            )
"""
HIDING = (seed_program()
          .replace("class DeltaNet(nn.Module):", "HIDDEN = {}\n\n\nclass DeltaNet(nn.Module):")
          .replace(READ_STATE, "            state = HIDDEN.get((self.layer_idx, past_key_values.get_seq_length(self.layer_idx)))\n")
          .replace(UPDATE, "            HIDDEN[self.layer_idx, past_key_values.get_seq_length(self.layer_idx) + length] = {\n"
                           "                'recurrent_state': recurrent, 'conv_state': (conv_q, conv_k, conv_v)}\n"
                           "            past_key_values.update(recurrent_state=recurrent.new_zeros(1), "
                           "layer_idx=self.layer_idx, offset=length)\n"))


@pytest.fixture(autouse=True)
def _jail_or_weak(monkeypatch):
    if not probe().available:
        monkeypatch.setenv("SANDBOX_ISOLATION", "weak")


def checkpoint(directory, name: str, program: str):
    torch.manual_seed(0)
    model = LM(CONFIG, load_layer_class(program, name=f"state_{name}", compile=False))
    return save_checkpoint(directory / name, model, program, None)


@pytest.fixture(scope="module")
def softmax_beside_seed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("state")
    softmax = checkpoint(directory, "softmax", panel_programs(["softmax_attention"])["softmax_attention"].read_text())
    seed = checkpoint(directory, "seed", seed_program())
    with pytest.MonkeyPatch.context() as patch:
        if not probe().available:
            patch.setenv("SANDBOX_ISOLATION", "weak")
        return state_comparison(softmax, seed, workdir=directory / "work")


def test_the_seeds_state_is_its_memory_and_convolution_tails(softmax_beside_seed):
    result = softmax_beside_seed
    heads, width = CONFIG.num_heads, 4  # the seed's conv_size
    d_k = d_v = CONFIG.hidden_size // heads  # expand_k = expand_v = 1
    expected = heads * d_k * d_v + width * (2 * heads * d_k + heads * d_v)  # memory, then q, k, v tails
    assert result["seed_state_floats_per_token"] == 0, result
    assert result["seed_state_floats"] == result["seed_state_constant_floats"] == expected, result
    print(f"seed: {result['seed_state_floats']} floats of state per layer")


def test_softmax_attention_grows_by_a_key_and_a_value_per_token(softmax_beside_seed):
    result = softmax_beside_seed
    assert result["state_floats_per_token"] == 2 * CONFIG.hidden_size, result
    assert result["state_constant_floats"] == 3 * CONFIG.hidden_size * 4, result  # the convolution tails
    at_length = result["state_constant_floats"] + 2 * CONFIG.hidden_size * CONFIG.max_seq_len
    assert result["state_floats"] == at_length and result["state_context"] == CONFIG.max_seq_len
    assert result["state_vs_seed"] == round(at_length / result["seed_state_floats"], 4)
    print(f"softmax: {result['state_floats_per_token']} floats per token per layer, {result['state_vs_seed']}x the seed")


def test_a_cache_that_does_not_hold_the_context_gets_no_size(tmp_path):
    forgetful = checkpoint(tmp_path, "forgetful", FORGETFUL)
    result = state_profile(forgetful, workdir=tmp_path / "work")
    assert FORGETFUL != seed_program()
    assert result["state_floats"] is None and result["state_floats_per_token"] is None
    assert "in a fresh server" in result["state_reason"] and "does not hold the context" in result["state_reason"]


def test_a_state_kept_in_process_memory_is_not_counted(tmp_path):
    hiding = checkpoint(tmp_path, "hiding", HIDING)
    result = state_profile(hiding, workdir=tmp_path / "work")
    assert "HIDDEN[" in HIDING and result["state_floats"] is None
    assert "in a fresh server" in result["state_reason"], result["state_reason"]


def test_no_cache_gets_no_size_and_the_cost_profile_still_comes_back(tmp_path):
    none, seed = checkpoint(tmp_path, "none", NO_CACHE), checkpoint(tmp_path, "seed", seed_program())
    profile = cost_profile(none, seed, workdir=tmp_path / "work", rounds=1, batch_size=1)
    assert profile["speed_vs_seed"] > 0
    assert profile["state_floats"] is None and profile["state_vs_seed"] is None
    assert "returned no cache" in profile["state_reason"], profile["state_reason"]
    assert profile["seed_state_floats"] > 0 and "seed_state_reason" not in profile
