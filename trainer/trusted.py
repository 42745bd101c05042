"""The trusted side of training: seal the weights a sandboxed run wrote into a checkpoint, then measure it.

    checkpoint = seal(workdir / "checkpoint", home / "seed-0", program, fidelity, data, seed=0, device="cpu")
    numbers = measure(checkpoint, fidelity, data, workdir=..., device="cpu")   # {val_loss, probes, ...}

Of what a training child writes, only `model.safetensors` is used, and only after its header shows
tensors and nothing else. The parent writes the program (its own copy), the model config (from the
fidelity and the data it prepared), the tokenizer, and the sha256 of program and weights, so that a
checkpoint changed afterwards is refused when loaded. The validation loss, and for generated tasks
each task's accuracy, are then computed here from the logits of a fresh sandboxed model server
(`trainer.boundary`), with leak probes riding in every batch (`trainer.judge`). The training child's
own numbers stay on record as its claims.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from trainer.boundary import SandboxedModel
from trainer.checkpoint import file_sha256, write_description
from trainer.judge import TOLERANCE, validation_loss
from trainer.model import LMConfig
from trainer.synthetic import SyntheticTasks, task_accuracies

# A training run's own validation loss is read on other windows than the trusted one (the training split's
# tail), so the two differ a little; a claim this much lower than the measurement is a faked one.
CLAIM_MARGIN = 0.25
SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}


def check_weights(path: Path) -> None:
    """Refuse a weights file that is not plain safetensors (a JSON header of tensors, then their bytes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if length > min(size - 8, 100 << 20):
            raise ValueError(f"{path.name} is not a safetensors file (header length {length})")
        header = json.loads(f.read(length))
    for name, entry in header.items():
        if name != "__metadata__" and (not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_DTYPES):
            raise ValueError(f"{path.name}: entry {name!r} is not a tensor")


def precision(fidelity, device: str) -> str:
    """The precision a run trains and is evaluated in (as `trainer.train.Trainer` decides it)."""
    autocast = fidelity.dtype == "bfloat16" or (device.startswith("cuda") and fidelity.dtype == "auto")
    return "bfloat16" if autocast else "float32"


def seal(source: Path, directory: Path, program: str, fidelity, data, *, seed: int, device: str) -> Path:
    """Build a checkpoint in DIRECTORY from the weights in SOURCE; everything else comes from the parent."""
    weights = Path(source) / "model.safetensors"
    if not weights.is_file():
        raise ValueError("the training run wrote no model.safetensors")
    check_weights(weights)
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    shutil.copyfile(weights, directory / "model.safetensors")
    lm = LMConfig.from_fidelity(fidelity, eos_token_id=data.eos_token_id)
    lm.vocab_size = data.vocab_size
    write_description(directory, lm, program, data.tokenizer, fidelity=fidelity.name, seed=seed,
                      dtype=precision(fidelity, device), weights_sha256=file_sha256(directory / "model.safetensors"),
                      sealed=True)
    return directory


def measure(checkpoint: Path, fidelity, data, *, workdir: Path, device: str = "cpu", threads: int | None = None,
            stop=None, seed: int = 0) -> dict:
    """Trusted numbers of a sealed checkpoint; raises LeakFound or ModelFailed (both the candidate's fault)."""
    started = time.monotonic()
    inputs, labels = data.validation()
    tolerance = TOLERANCE[precision(fidelity, device)]
    generator = torch.Generator().manual_seed(seed)
    with SandboxedModel(checkpoint, workdir=workdir, device=device, timeout_s=fidelity.timeout_s,
                        memory_mb=fidelity.memory_mb, threads=threads, stop=stop) as model:
        numbers = validation_loss(model, inputs, labels, batch_size=fidelity.micro_batch_size,
                                  generator=generator, tolerance=tolerance)
        if isinstance(data, SyntheticTasks):
            numbers.update(task_accuracies(data, lambda ids: torch.cat([model(b) for b in ids.split(64)])))
    numbers["judge_s"] = time.monotonic() - started
    return numbers


def check_claim(claimed: float | None, trusted: float) -> None:
    """Refuse a run whose own reported loss is far below the trusted measurement of its weights."""
    if claimed is not None and claimed == claimed and claimed < trusted * (1 - CLAIM_MARGIN):
        raise ClaimRefuted(f"the training run reported a validation loss of {claimed:.4f}, but its weights measure "
                           f"{trusted:.4f}: the program tampered with its own measurement")


class ClaimRefuted(ValueError):
    """What a training run reported about itself is contradicted by the trusted measurement."""
