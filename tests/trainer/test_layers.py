"""Loading layer programs: fla routing to the CPU stand-ins, load_layer_class, and its errors."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from trainer import fla_cpu, layers
from trainer.layers import FLA_SURFACE, ProgramError, load_layer_class, route_fla, seed_program


@pytest.fixture
def fla_modules():
    """Put `sys.modules`' fla entries back as they were after the test."""
    saved = {name: module for name, module in sys.modules.items() if name == "fla" or name.startswith("fla.")}
    routed = layers._routed
    yield
    for name in [n for n in sys.modules if n == "fla" or n.startswith("fla.")]:
        del sys.modules[name]
    sys.modules.update(saved)
    layers._routed = routed


def test_cpu_routing_serves_fla_names_from_the_stand_ins(fla_modules):
    assert route_fla(use_kernels=False) == "cpu"
    from fla.layers.utils import pad_input
    from fla.modules import ShortConvolution
    from fla.ops.delta_rule import chunk_delta_rule

    assert ShortConvolution is fla_cpu.ShortConvolution
    assert chunk_delta_rule is fla_cpu.chunk_delta_rule and pad_input is fla_cpu.pad_input
    for module, names in FLA_SURFACE.items():
        for name in names:
            assert getattr(sys.modules[module], name) is getattr(fla_cpu, name), f"{module}.{name}"
    assert route_fla(use_kernels=False) == "cpu"  # idempotent


def test_a_cpu_run_on_a_gpu_machine_keeps_the_stand_ins(fla_modules, monkeypatch):
    # Where kernels could run, loading a program after a CPU routing must not switch to the real fla.
    monkeypatch.setattr(layers, "fla_kernels_available", lambda: True)
    assert route_fla(use_kernels=False) == "cpu"
    assert route_fla() == "cpu"
    load_layer_class(seed_program(), name="cpu_on_gpu_host")
    assert getattr(sys.modules["fla.modules"], "__cpu_stand_in__", False)


def test_kernel_routing_replaces_stand_ins_registered_earlier(fla_modules, tmp_path, monkeypatch):
    # A stand-in for the real package: a process that ran on the CPU first must then get the real fla.
    (tmp_path / "fla" / "layers").mkdir(parents=True)
    (tmp_path / "fla" / "__init__.py").write_text("REAL = True\n")
    (tmp_path / "fla" / "layers" / "__init__.py").write_text("REAL = True\n")
    route_fla(use_kernels=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert route_fla(use_kernels=True) == "fla"
    assert getattr(sys.modules["fla.layers"], "REAL", False)
    assert not any(getattr(m, "__dict__", {}).get("__cpu_stand_in__") for m in list(sys.modules.values()))


def test_the_seed_loads_and_runs():
    layer_cls = load_layer_class(seed_program(), name="seed_test")
    assert layer_cls.__name__ == "DeltaNet"
    layer = layer_cls(hidden_size=32, num_heads=2, layer_idx=0)
    x = torch.randn(2, 9, 32)
    out, attentions, cache = layer(x)
    assert out.shape == x.shape and attentions is None and cache is None


def test_torch_compile_is_a_no_op_for_programs_on_a_cpu(fla_modules):
    source = seed_program() + "\n\n@torch.compile\ndef twice(x):\n    return 2 * x\n\nTWICE = twice\n"
    original = torch.compile
    route_fla(use_kernels=False)
    layer_cls = load_layer_class(source, name="compiled")  # the default: compile where the kernels run
    module = sys.modules[layer_cls.__module__]
    assert module.TWICE.__name__ == "twice" and module.TWICE(3) == 6  # the plain function, not compiled
    assert torch.compile is original


@pytest.mark.parametrize("source, message", [
    ("class DeltaNet(nn.Module)\n    pass\n", "syntax error at line 1"),
    ("import fla.does_not_exist\n", "the program failed to load: ModuleNotFoundError"),
    ("raise RuntimeError('boom')\n", "the program failed to load: RuntimeError: boom"),
    ("import torch.nn as nn\nclass Other(nn.Module):\n    pass\n", "defines no `class DeltaNet(nn.Module)`"),
    ("DeltaNet = 3\n", "defines no `class DeltaNet(nn.Module)`"),
])
def test_bad_programs_raise_program_error_with_the_cause(source, message):
    with pytest.raises(ProgramError, match=re.escape(message)):
        load_layer_class(source, name="bad")
