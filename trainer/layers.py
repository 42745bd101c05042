"""Loading layer programs: the seed DeltaNet, fla routing, and `load_layer_class(source)`.

A program is one Python file defining `class DeltaNet(nn.Module)` (the layer contract in the
README). Programs import `fla`; where its kernels can run (CUDA and triton present) they get the
real fla, elsewhere the pure PyTorch stand-ins of `trainer.fla_cpu` under the same module names.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn

SEED_PROGRAM = Path(__file__).with_name("programs") / "seed_deltanet.py"
LAYER_CLASS = "DeltaNet"

# fla module name -> names it exports from trainer.fla_cpu.
FLA_SURFACE = {
    "fla.modules": ["ShortConvolution", "RMSNorm", "FusedRMSNormGated", "L2Norm", "l2norm", "l2_norm"],
    "fla.modules.l2norm": ["l2norm", "l2_norm", "L2Norm"],
    "fla.modules.layernorm": ["RMSNorm"],
    "fla.modules.fused_norm_gate": ["FusedRMSNormGated"],
    "fla.modules.convolution": ["ShortConvolution"],
    "fla.layers.utils": ["get_unpad_data", "index_first_axis", "index_put_first_axis", "pad_input", "unpad_input"],
    "fla.models.utils": ["Cache"],
    "fla.ops.delta_rule": ["chunk_delta_rule", "fused_recurrent_delta_rule", "fused_chunk_delta_rule"],
    "fla.ops.gated_delta_rule": ["chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule"],
}


class ProgramError(Exception):
    """The program cannot be loaded: syntax error, import error, or no layer class."""


def seed_program() -> str:
    """Source of the seed DeltaNet layer, the baseline every candidate is measured against."""
    return SEED_PROGRAM.read_text()


def fla_kernels_available() -> bool:
    """True where the real fla kernels can run: a CUDA device and triton."""
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


_routed: str | None = None


def route_fla(use_kernels: bool | None = None) -> str:
    """Make `import fla...` work for programs: the real package with kernels, or the CPU stand-ins.

    Returns "fla" or "cpu". `use_kernels=None` keeps the routing this process already chose (a CPU run
    on a GPU machine stays on the stand-ins), else picks the kernels where they can run. Idempotent; the
    stand-ins are registered under fla's own module names.
    """
    global _routed
    if use_kernels is None:
        if _routed is not None:
            return _routed
        use_kernels = fla_kernels_available()
    _routed = _route(use_kernels)
    return _routed


def _route(use_kernels: bool) -> str:
    if use_kernels:
        # Stand-ins registered earlier in this process (a CPU run) would shadow the real package.
        for name in [n for n, m in list(sys.modules.items()) if getattr(m, "__dict__", {}).get("__cpu_stand_in__")]:
            del sys.modules[name]
        import fla.layers  # noqa: F401  (fails loudly if the installed fla cannot run here)
        return "fla"
    from trainer import fla_cpu

    def module(name: str) -> types.ModuleType:
        existing = sys.modules.get(name)
        if existing is not None and getattr(existing, "__cpu_stand_in__", False):
            return existing
        mod = types.ModuleType(name, f"CPU stand-in for {name} (trainer.fla_cpu)")
        mod.__cpu_stand_in__ = True
        mod.__path__ = []  # a package, so that submodules import
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(module(parent), child, mod)
        return mod

    # Modules first, names second: `fla.modules.l2norm` is a submodule and also a function exported by
    # `fla.modules`; as in fla, the function must win.
    modules = {name: module(name) for name in FLA_SURFACE}
    for name, exports in FLA_SURFACE.items():
        for export in exports:
            setattr(modules[name], export, getattr(fla_cpu, export))
    return "cpu"


@contextmanager
def _compile_disabled():
    """Programs decorate functions with `torch.compile`; on a CPU that costs minutes and a compiler."""
    original = torch.compile

    def passthrough(fn=None, *args, **kwargs):
        return fn if fn is not None else (lambda f: f)

    torch.compile = passthrough
    try:
        yield
    finally:
        torch.compile = original


def load_layer_class(source: str, *, name: str = "candidate", compile: bool | None = None) -> type[nn.Module]:
    """Execute a program's source as a module and return its `DeltaNet` class.

    `compile=None` keeps `torch.compile` only where fla kernels run (a GPU); on a CPU it is a no-op.
    Raises ProgramError with the cause when the program does not load.
    """
    backend = route_fla()
    keep_compile = (backend == "fla") if compile is None else compile
    module_name = f"layer_program_{name}"
    module = types.ModuleType(module_name)
    module.__file__ = f"<{name}>"
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        code = compile_source(source, name)
        if keep_compile:
            exec(code, module.__dict__)
        else:
            with _compile_disabled():
                exec(code, module.__dict__)
    except ProgramError:
        raise
    except Exception as exc:
        raise ProgramError(f"the program failed to load: {type(exc).__name__}: {exc}") from exc
    layer = module.__dict__.get(LAYER_CLASS)
    if not (isinstance(layer, type) and issubclass(layer, nn.Module)):
        raise ProgramError(f"the program defines no `class {LAYER_CLASS}(nn.Module)`")
    return layer


def compile_source(source: str, name: str = "candidate"):
    try:
        return compile(source, f"<{name}>", "exec")
    except SyntaxError as exc:
        raise ProgramError(f"syntax error at line {exc.lineno}: {exc.msg}") from exc
