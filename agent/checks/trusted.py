"""The checks whose verdict the program cannot touch: causality and batch independence judged from logits.

    check = trusted_leak_check(source, fidelity, workdir=Path(".../trusted"))   # {name, ok, hard, detail}

The in-sandbox checks (agent.checks.probe) run the program and the judging code in one process, so a
program can patch the judge. Here the program only computes logits, in a sandboxed model server
(trainer.boundary) with freshly initialised weights, and this process compares them (trainer.judge):
at the fidelity's training length, where a leak pays, and at lengths the program cannot guess, in
train and eval modes, with and without grad.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import torch

from trainer.boundary import ModelFailed, SandboxedModel
from trainer.checkpoint import write_description
from trainer.judge import leak_checks
from trainer.model import LMConfig

# The vocabulary does not change what a layer sees; a small one keeps the logits cheap to send.
CHECK_VOCAB = 512
CHECK_LAYERS = 2


def model_description(source: str, fidelity, directory: Path, seed: int) -> Path:
    """A model directory without weights: the child initialises them from `init_seed`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").unlink(missing_ok=True)
    lm = LMConfig.from_fidelity(fidelity, eos_token_id=0)
    lm.vocab_size, lm.num_layers = min(CHECK_VOCAB, fidelity.vocab_size), CHECK_LAYERS
    write_description(directory, lm, source, None, init_seed=seed, dtype="float32")
    return directory


def check_lengths(fidelity, rng: random.Random) -> list[int]:
    """The training length, plus two the program cannot know in advance."""
    return [fidelity.seq_len, rng.randint(5, 63), rng.randint(65, 2 * fidelity.seq_len + 65)]


def trusted_leak_check(source: str, fidelity, *, workdir: Path, timeout_s: float = 180.0, memory_mb: int = 4096,
                       stop: threading.Event | None = None) -> dict:
    seed = random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    model_dir = model_description(source, fidelity, Path(workdir) / "model", seed)
    lengths = check_lengths(fidelity, rng)
    generator = torch.Generator().manual_seed(seed)
    try:
        with SandboxedModel(model_dir, workdir=Path(workdir) / "child", timeout_s=timeout_s, memory_mb=memory_mb,
                            threads=1, stop=stop) as model:
            checks = leak_checks(model, vocab_size=int(json.loads((model_dir / "config.json").read_text())["lm"]
                                                       ["vocab_size"]), lengths=lengths, generator=generator)
    except ModelFailed as err:
        return {"name": "trusted_causality", "ok": False, "hard": True, "detail": str(err)}
    return checks[-1]
