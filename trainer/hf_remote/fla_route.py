"""Make the layer program's `import fla...` work wherever the exported model is loaded.

With CUDA, triton and the `fla` package present, the program gets fla's kernels. Elsewhere the
pure PyTorch stand-ins in `fla_cpu.py` are registered under fla's module names, and `torch.compile`
is a no-op while the program is imported (compiling on a CPU costs minutes and a compiler). Set
DISCOVERY_FLA=cpu to force the stand-ins, e.g. to run on a CPU on a machine with a GPU.
"""

import importlib.util
import os
import sys
import types
from contextlib import contextmanager

import torch

# transformers ships only the files a `from .name import` line names, so not `from . import fla_cpu`.
from .fla_cpu import RMSNorm as _a_stand_in

fla_cpu = sys.modules[_a_stand_in.__module__]

# fla module name -> names it exports from fla_cpu (written in by the exporter).
FLA_SURFACE = {}


def kernels_available() -> bool:
    if os.environ.get("DISCOVERY_FLA", "").lower() == "cpu":
        return False
    return torch.cuda.is_available() and all(importlib.util.find_spec(n) for n in ("triton", "fla"))


def _stand_in(name: str) -> types.ModuleType:
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__cpu_stand_in__", False):
        return existing
    module = types.ModuleType(name, f"CPU stand-in for {name}")
    module.__cpu_stand_in__ = True
    module.__path__ = []  # a package, so that submodules import
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(_stand_in(parent), child, module)
    return module


def register_stand_ins() -> None:
    # Modules first, names second: `fla.modules.l2norm` is both a submodule and a function of
    # `fla.modules`; as in fla, the function must win.
    modules = {name: _stand_in(name) for name in FLA_SURFACE}
    for name, exports in FLA_SURFACE.items():
        for export in exports:
            setattr(modules[name], export, getattr(fla_cpu, export))


@contextmanager
def program_imports():
    """Route fla for the program's import; keep `torch.compile` only where fla's kernels run."""
    if kernels_available():
        yield "fla"
        return
    register_stand_ins()
    original = torch.compile

    def passthrough(fn=None, *args, **kwargs):
        return fn if fn is not None else (lambda f: f)

    torch.compile = passthrough
    try:
        yield "cpu"
    finally:
        torch.compile = original
