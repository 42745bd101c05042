"""The cost of a candidate beside the seed: timed by the trusted side, and a slower layer reads slower."""

from __future__ import annotations

import pytest
import torch

from evaluator.cost import cost_profile
from trainer.checkpoint import save_checkpoint
from trainer.fidelity import get_fidelity
from trainer.jail import probe
from trainer.layers import load_layer_class, seed_program
from trainer.model import LM, LMConfig
from trainer.synthetic import SyntheticTasks
from trainer.trusted import seal

FIDELITY = get_fidelity("synthetic", {"hidden_size": 64, "num_layers": 2, "eval_batches": 1})
RETURN = "        return o, None, past_key_values"
# The seed with 300 extra 256 x 256 matrix products per layer: the same function, many times the work.
SLOW = seed_program().replace(RETURN, "        waste = hidden_states.new_ones(256, 256)\n"
                                      "        for _ in range(300):\n            waste = waste @ waste / 256\n"
                                      "        o = o + 0 * waste.sum()\n" + RETURN)


@pytest.fixture(autouse=True)
def _jail_or_weak(monkeypatch):
    if not probe().available:
        monkeypatch.setenv("SANDBOX_ISOLATION", "weak")


def checkpoint(tmp_path, name: str, program: str):
    data = SyntheticTasks(FIDELITY.seq_len, eval_sequences=32)
    config = LMConfig.from_fidelity(FIDELITY, eos_token_id=data.eos_token_id)
    torch.manual_seed(0)
    model = LM(config, load_layer_class(program, name=name))
    save_checkpoint(tmp_path / f"{name}-child", model, program, None)
    return seal(tmp_path / f"{name}-child", tmp_path / name, program, FIDELITY, data, seed=0, device="cpu")


def test_a_slower_layer_is_measured_slower_than_the_seed_and_the_seed_at_parity(tmp_path):
    assert SLOW != seed_program()
    seed, slow = checkpoint(tmp_path, "seed", seed_program()), checkpoint(tmp_path, "slow", SLOW)

    parity = cost_profile(seed, seed, workdir=tmp_path / "parity", rounds=5, batch_size=32)
    slower = cost_profile(slow, seed, workdir=tmp_path / "slower", rounds=5, batch_size=32)

    assert 0.6 < parity["speed_vs_seed"] < 1.6, parity
    assert slower["speed_vs_seed"] < 0.5 * parity["speed_vs_seed"], (slower, parity)
    print(f"speed vs seed: parity {parity['speed_vs_seed']}, slower {slower['speed_vs_seed']}")
    assert slower["tokens_per_s"] < slower["seed_tokens_per_s"]
    assert slower["peak_memory_mb"] > 0 and slower["batch"][1] == FIDELITY.seq_len
