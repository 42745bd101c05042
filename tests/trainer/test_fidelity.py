"""Fidelities: overrides are typed and validated, with errors that name the field."""

from __future__ import annotations

import dataclasses

import pytest

from trainer.fidelity import FIDELITIES, get_fidelity, parse_overrides


def test_overrides_from_the_command_line_are_typed():
    fidelity = get_fidelity("smoke", parse_overrides(["steps=50", "lr=1e-3", "compile=true", "tie_embeddings=no",
                                                      "max_layer_params=1e5", "dataset=python-stdlib",
                                                      "dtype=bfloat16"]))
    assert fidelity.steps == 50 and isinstance(fidelity.steps, int)
    assert fidelity.lr == 1e-3 and fidelity.compile is True and fidelity.tie_embeddings is False
    assert fidelity.max_layer_params == 100_000 and isinstance(fidelity.max_layer_params, int)
    assert fidelity.dataset == "python-stdlib" and fidelity.dtype == "bfloat16"
    assert fidelity.name == "smoke" and fidelity.hidden_size == FIDELITIES["smoke"].hidden_size


def test_overrides_from_a_dict_keep_their_types():
    fidelity = get_fidelity("explore", {"steps": 10, "mlp_ratio": 3, "compile": False, "batch_size": 32.0})
    assert (fidelity.steps, fidelity.mlp_ratio, fidelity.compile, fidelity.batch_size) == (10, 3.0, False, 32)
    assert isinstance(fidelity.mlp_ratio, float) and isinstance(fidelity.batch_size, int)
    assert fidelity.tokens_per_step == 32 * fidelity.seq_len
    assert FIDELITIES["explore"].steps == 2000  # the named fidelity is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        fidelity.steps = 3


@pytest.mark.parametrize("overrides, message", [
    ({"stepz": 5}, "unknown fidelity field 'stepz'; fields are ["),
    ({"steps": "abc"}, "fidelity field 'steps': could not convert"),
    ({"steps": "2.5"}, "fidelity field 'steps': not an integer"),
    ({"steps": 2.5}, "fidelity field 'steps': not an integer"),
    ({"steps": "inf"}, "fidelity field 'steps': not an integer"),
    ({"steps": "1e400"}, "fidelity field 'steps': not an integer"),
    ({"compile": "maybe"}, "fidelity field 'compile': not a boolean"),
    ({"compile": 2}, "fidelity field 'compile': not a boolean"),
    ({"lr": "fast"}, "fidelity field 'lr': could not convert"),
    ({"dtype": "float16"}, "fidelity field 'dtype': 'float16' is not one of"),
    ({"steps": "-5"}, "fidelity field 'steps': must be positive, got '-5'"),
    ({"replicates": 0}, "fidelity field 'replicates': must be positive"),
    ({"lr": "nan"}, "fidelity field 'lr': not a finite number"),
    ({"warmup_steps": -1}, "fidelity field 'warmup_steps': must not be negative"),
])
def test_bad_overrides_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ValueError) as err:
        get_fidelity("smoke", overrides)
    assert message in str(err.value)


def test_unknown_fidelity_and_malformed_pairs():
    with pytest.raises(ValueError, match=r"unknown fidelity 'huge'; choose one of \['explore', 'smoke', 'synthetic', 'verify'\]"):
        get_fidelity("huge")
    with pytest.raises(ValueError, match="expected key=value, got 'steps'"):
        parse_overrides(["steps"])
    assert parse_overrides(["dataset = a=b "]) == {"dataset": "a=b"}
    assert get_fidelity("smoke", {}) is FIDELITIES["smoke"]


def test_the_named_fidelities_are_consistent():
    for fidelity in FIDELITIES.values():
        assert fidelity.hidden_size % fidelity.num_heads == 0
        assert fidelity.batch_size % fidelity.micro_batch_size == 0
        assert fidelity.warmup_steps < fidelity.steps
        assert fidelity.dtype in ("auto", "float32", "bfloat16")
