"""Fixtures of the trainer tests: fla's pure-PyTorch references, a small corpus and its prepared cache."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from trainer import layers
from trainer.fidelity import get_fidelity
from trainer.layers import route_fla


def fla_reference(relative: str):
    """fla's own `naive.py` reference, loaded by file path: `import fla...` needs triton."""
    for entry in sys.path:
        path = Path(entry or ".") / "fla" / relative
        if path.is_file():
            name = "fla_reference_" + relative.replace("/", "_").removesuffix(".py")
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    # fla is a requirement: a missing reference is a broken install or a moved file, never a reason to skip.
    pytest.fail(f"fla's reference fla/{relative} is not on sys.path (is flash-linear-attention==0.6.0 installed?)")


@pytest.fixture(scope="session")
def delta_naive():
    return fla_reference("ops/delta_rule/naive.py")


@pytest.fixture(scope="session")
def gated_naive():
    return fla_reference("ops/gated_delta_rule/naive.py")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A few hundred kB of text: the source of some standard-library modules (prose docstrings and code)."""
    directory = tmp_path_factory.mktemp("corpus")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("argparse", "textwrap", "fractions", "heapq", "bisect", "difflib", "statistics", "calendar"):
        (directory / f"{name}.txt").write_text((stdlib / f"{name}.py").read_text(encoding="utf-8"))
    return directory


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory, corpus) -> Path:
    """A cache with the corpus tokenised once for the whole session (vocabulary 512)."""
    from trainer.data import prepare

    cache = tmp_path_factory.mktemp("cache")
    prepare(str(corpus), 512, cache, progress=False)
    return cache


@pytest.fixture(scope="session")
def tiny_overrides(corpus) -> dict:
    """Smoke fidelity shrunk to a few seconds of CPU: the corpus above, short sequences, few steps."""
    return {"dataset": str(corpus), "vocab_size": 512, "seq_len": 64, "batch_size": 8, "micro_batch_size": 8,
            "steps": 60, "warmup_steps": 5, "eval_every": 30, "eval_batches": 2, "log_every": 5, "replicates": 1}


@pytest.fixture(scope="session")
def tiny(tiny_overrides):
    return get_fidelity("smoke", tiny_overrides)


PROGRAMS = Path(__file__).with_name("programs")


@pytest.fixture(scope="session")
def program():
    """program("nan_loss") -> the source of tests/trainer/programs/nan_loss.py."""
    return lambda name: (PROGRAMS / f"{name}.py").read_text()


@pytest.fixture(scope="module")
def cpu_fla():
    """The CPU stand-ins for fla on one thread; `sys.modules`' fla entries and the threads put back afterwards.

    One thread: these tensors are tiny, and on a busy machine a second thread's wait costs 100x the work.
    """
    saved = {name: module for name, module in sys.modules.items() if name == "fla" or name.startswith("fla.")}
    routed, threads = layers._routed, torch.get_num_threads()
    route_fla(use_kernels=False)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for name in [n for n in sys.modules if n == "fla" or n.startswith("fla.")]:
        del sys.modules[name]
    sys.modules.update(saved)
    layers._routed = routed
