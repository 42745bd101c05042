"""The engineer's checks: each property is tested with a program that has it and one that breaks it.

Programs that should be rejected are the seed with one line changed, so that each failure has a
single cause. Most run in-process (`run_checks`); the sandboxed path is covered by the seed, the
fla-style layers, a program that fails to load and one that hangs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.checks import check_program, check_summary, dynamic_check, static_check
from agent.checks.dynamic import ProbeConfig, run_checks
from trainer.fidelity import get_fidelity
from trainer.layers import load_layer_class, seed_program
from trainer.sandbox import MachineBusy

PROGRAMS = Path(__file__).with_name("programs")
SMOKE = get_fidelity("smoke")
OUTPUT_LINE = '        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))\n'


def seed_with(old: str, new: str) -> str:
    source = seed_program()
    assert source.count(old) == 1, f"the seed no longer contains {old!r}"
    return source.replace(old, new)


def before_output(line: str) -> str:
    """The seed with `line` run on o [B, T, H, D] just before the output projection."""
    return seed_with(OUTPUT_LINE, f"        {line}\n{OUTPUT_LINE}")


def checks_of(source: str, **settings) -> dict:
    return run_checks(load_layer_class(source, compile=False), ProbeConfig.from_fidelity(SMOKE, **settings))


def named(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


# ---------------------------------------------------------------- the sandboxed path


def test_seed_passes_every_check_in_the_sandbox(tmp_path):
    report = check_program(seed_program(), SMOKE, tmp_path)
    assert report["ok"], check_summary(report)
    assert report["failed"] == [] and report["flagged"] == [] and report["warnings"] == []
    names = [c["name"] for c in report["checks"]]
    assert names == ["load", "construct", "params", "forward", "finite", "gradients", "causality", "batch", "lm_step",
                     "cost_growth", "trusted_causality"]
    assert all(c["ok"] for c in report["checks"])
    assert 0 < report["params_per_layer"] <= SMOKE.max_layer_params
    assert named(report, "cost_growth")["exponent"] < 1.6
    assert check_summary(report).startswith("passed 11 checks")
    assert json.loads(json.dumps(report)) == report  # stored as JSON on the experiment


@pytest.mark.parametrize("program", ["gated_deltanet.py", "gla.py"])
def test_fla_style_layers_written_as_programs_pass(program, tmp_path):
    report = check_program((PROGRAMS / program).read_text(), SMOKE, tmp_path)
    assert report["ok"], check_summary(report)
    assert report["flagged"] == []


def test_a_program_that_fails_to_load_reports_its_line(tmp_path):
    source = seed_with("class DeltaNet(nn.Module):", "raise ValueError('boom')\n\n\nclass DeltaNet(nn.Module):")
    report = check_program(source, SMOKE, tmp_path)
    assert not report["ok"] and report["failed"] == ["load"]
    detail = named(report, "load")["detail"]
    assert "ValueError: boom" in detail and "raise ValueError('boom')" in detail  # the program's own line is quoted


def test_a_spinning_program_spends_its_cpu_time_and_the_running_check_is_named(tmp_path):
    source = seed_with("        batch, length, _ = hidden_states.shape\n",
                       "        while True:\n            pass\n")
    report = dynamic_check(source, SMOKE, workdir=tmp_path, cpu_s=8, timeout_s=120)
    assert not report["ok"]
    assert report["failed"] == ["forward"]
    assert report["reason"].startswith("CPU-time limit") and "CPU-time limit" in named(report, "forward")["detail"]
    assert named(report, "params")["ok"]  # what finished before the hang is kept


def test_a_wall_clock_timeout_is_the_machines_fault_and_retried(tmp_path):
    # Sleeping spends no CPU time: only the wall-clock backstop can stop it, and that is not a verdict.
    source = seed_with("        batch, length, _ = hidden_states.shape\n",
                       "        import time\n        time.sleep(600)\n")
    with pytest.raises(MachineBusy, match="wall-clock backstop"):
        dynamic_check(source, SMOKE, workdir=tmp_path, cpu_s=60, timeout_s=8)


# ---------------------------------------------------------------- each property, broken on purpose


def test_a_layer_that_reads_the_future_is_rejected():
    # Adds a reversed cumulative sum over time: every output sees all later positions.
    report = checks_of(before_output("o = o + o.flip(1).cumsum(1).flip(1) / length"))
    assert report["failed"] == ["causality"], check_summary(report)
    causality = named(report, "causality")
    assert "reads future tokens" in causality["detail"] and "first at position 0" in causality["detail"]
    assert "failed causality" in check_summary(report)


def test_a_leak_inside_one_chunk_is_caught():
    # Each position sees the next one only: a leak that never crosses far, and not at a chunk boundary.
    report = checks_of(before_output("o = o + torch.roll(o, -1, dims=1)"))
    assert report["failed"] == ["causality"]


def test_quadratic_attention_is_flagged_not_rejected():
    report = checks_of((PROGRAMS / "softmax_attention.py").read_text())
    assert report["ok"], check_summary(report)
    assert report["flagged"] == ["cost_growth"]
    cost = named(report, "cost_growth")
    assert cost["exponent"] > 1.6 and not cost["hard"]
    assert "flagged cost_growth" in check_summary(report)


def test_mixing_across_the_batch_is_rejected():
    report = checks_of(before_output("o = o - o.mean(0, keepdim=True)"))
    assert report["failed"] == ["batch"], check_summary(report)
    assert "mixes samples" in named(report, "batch")["detail"]


def test_a_layer_over_the_parameter_budget_is_rejected():
    report = checks_of(seed_with("expand_v: float = 1.0", "expand_v: float = 16.0"))
    assert report["failed"] == ["params"]
    assert report["params_per_layer"] > SMOKE.max_layer_params
    assert "over the budget of 100,000" in named(report, "params")["detail"]


def test_nan_outputs_are_rejected():
    report = checks_of(before_output("o = o * float('nan')"))
    assert report["failed"] == ["finite"], check_summary(report)
    assert "NaN or infinite" in named(report, "finite")["detail"]


def test_a_wrong_output_shape_breaks_the_contract():
    source = seed_with("        return o, None, past_key_values", "        return o[:, :-1], None, past_key_values")
    report = checks_of(source)
    assert report["failed"] == ["forward"]
    assert "expected the input's shape" in named(report, "forward")["detail"]


def test_unused_parameters_are_a_warning_only():
    source = seed_with("        self.o_proj = nn.Linear(", "        self.spare = nn.Linear(4, 4)\n        self.o_proj = nn.Linear(")
    report = checks_of(source)
    assert report["ok"]
    gradients = named(report, "gradients")
    assert gradients["warning"] and gradients["unused"] == ["spare.bias", "spare.weight"]


# ---------------------------------------------------------------- static checks


def test_static_accepts_the_seed():
    report = static_check(seed_program())
    assert report == {"ok": True, "errors": [], "warnings": [], "imports": report["imports"]}
    assert "fla.ops.delta_rule" in report["imports"]


def test_static_rejects_forbidden_imports_and_calls(tmp_path):
    source = "import os\n" + seed_program() + "\n\ndef sneaky():\n    os.system('rm -rf /')\n    eval('1')\n"
    report = static_check(source)
    assert not report["ok"]
    assert any(e.startswith("line 1: import of 'os' is forbidden") for e in report["errors"])
    assert any("`eval()` is forbidden" in e for e in report["errors"])
    combined = check_program(source, SMOKE, tmp_path)
    assert combined["failed"] == ["static"] and combined["checks"] == []
    assert check_summary(combined).startswith("failed the static checks")


@pytest.mark.parametrize("line, message", [
    ("import subprocess", "import of 'subprocess' is forbidden"),
    ("from importlib import import_module", "import of 'importlib' is forbidden"),
    ("import numpy", "import of 'numpy' is not allowed"),
    ("x = open('weights.bin', 'wb')", "`open()` with mode 'wb' is forbidden"),
    ("x = __import__('os')", "`__import__()` is forbidden"),
    ("x = torch.load('weights.pt')", "`torch.load()` is forbidden"),
    ("x = (1).__class__.__subclasses__", "attribute '__subclasses__' is forbidden"),
])
def test_static_names_each_forbidden_construct(line, message):
    report = static_check(seed_program() + "\n" + line + "\n")
    assert any(message in e for e in report["errors"]), report["errors"]


def test_static_reports_a_missing_class():
    report = static_check("import torch.nn as nn\n\n\nclass Mixer(nn.Module):\n    pass\n")
    assert report["errors"] == ["no top-level `class DeltaNet(nn.Module)`: the trainer loads the layer by that name"]


def test_static_reports_a_wrong_forward_signature():
    source = seed_with("        hidden_states: torch.Tensor,\n        attention_mask: torch.Tensor | None = None,\n",
                       "        hidden_states: torch.Tensor,\n        mask: torch.Tensor,\n")
    report = static_check(source)
    assert not report["ok"]
    assert any("`forward` requires mask without a default" in e for e in report["errors"]), report["errors"]


def test_static_reports_a_constructor_without_kwargs():
    report = static_check(seed_with("        norm_eps: float = 1e-5,\n        **kwargs,\n", "        norm_eps: float = 1e-5,\n"))
    assert any("`__init__` has no **kwargs" in e for e in report["errors"])


def test_static_reports_a_syntax_error_with_its_line():
    report = static_check("import torch\n\nclass DeltaNet(nn.Module)\n    pass\n")
    assert not report["ok"] and report["errors"][0].startswith("line 3")
    assert "syntax error" in report["errors"][0]


# ---------------------------------------------------------------- published programs


# A fixed sample of published programs and the checks each fails at the smoke fidelity (float32, as CPU
# training runs): two sound layers, one that casts to bfloat16 by hand (it relies on GPU autocast), one
# whose "causal" FFT filter has anti-causal taps, and one whose gating MLP is over the parameter budget.
PUBLISHED_SAMPLE = {
    "delta_net_hhmr": [],
    "delta_net_mor": [],
    "delta_net_rmsgm": ["forward"],
    "delta_net_spectral_fusion": ["causality"],
    "delta_net_entropy_floor": ["params"],
}


@pytest.mark.slow
def test_a_sample_of_published_programs(shared_dir, tmp_path):
    published = json.loads((shared_dir / "asi-arch" / "architectures_106.json").read_text())
    programs = {p["name"]: p["program"] for p in published}
    for name, failed in PUBLISHED_SAMPLE.items():
        report = check_program(programs[name], SMOKE, tmp_path / name)
        assert report["failed"] == failed, f"{name}: {check_summary(report)}"
        assert report["ok"] == (not failed)
    bf16 = check_program(programs["delta_net_rmsgm"], SMOKE, tmp_path / "bf16", autocast="bfloat16")
    assert bf16["ok"], check_summary(bf16)  # under autocast, as on a GPU, the hand-made cast is harmless
