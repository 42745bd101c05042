"""Checkpoints the evaluator can load: weights, model config, the program and the tokenizer.

    DIR/model.safetensors   weights
    DIR/config.json         {"lm": LMConfig, "program_sha256": ..., "fidelity": ..., ...}
    DIR/program.py          the layer program the weights belong to
    DIR/tokenizer.json      the tokenizer the model was trained with

A sealed checkpoint (`trainer.trusted.seal`) also records `weights_sha256`: the trusted side wrote it,
and loading refuses one whose program or weights changed since.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from trainer.layers import load_layer_class
from trainer.model import LM, LMConfig


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_description(directory: Path, lm: LMConfig, program: str, tokenizer, **meta) -> None:
    """Everything but the weights: the program, the tokenizer and config.json."""
    (directory / "program.py").write_text(program)
    if tokenizer is not None:  # synthetic tasks have token ids and no text
        tokenizer.save(str(directory / "tokenizer.json"))
    config = {"lm": lm.to_dict(), "program_sha256": sha256(program), "eos_token_id": lm.eos_token_id,
              "max_seq_len": lm.max_seq_len, **meta}
    (directory / "config.json").write_text(json.dumps(config, indent=1))


def save_checkpoint(directory: Path, model: LM, program: str, tokenizer, **meta) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / "model.safetensors"))
    write_description(directory, model.config, program, tokenizer, **meta)
    return directory


def verify_checkpoint(directory: Path) -> dict:
    """The checkpoint's config, after checking that its program (and sealed weights) are what it records."""
    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"no checkpoint in {directory} (config.json is missing)")
    config = json.loads((directory / "config.json").read_text())
    if sha256((directory / "program.py").read_text()) != config["program_sha256"]:
        raise ValueError(f"{directory}/program.py does not match the sha256 recorded in its config")
    expected = config.get("weights_sha256")
    if expected and file_sha256(directory / "model.safetensors") != expected:
        raise ValueError(f"{directory}/model.safetensors does not match the sha256 recorded when it was sealed")
    return config


@dataclass
class Checkpoint:
    model: LM
    tokenizer: object | None  # tokenizers.Tokenizer; None for synthetic tasks
    config: dict


def load_checkpoint(directory: Path, device: str | torch.device = "cpu") -> Checkpoint:
    from tokenizers import Tokenizer

    directory = Path(directory)
    config = verify_checkpoint(directory)
    program = (directory / "program.py").read_text()
    model = LM(LMConfig.from_dict(config["lm"]), load_layer_class(program, name=f"ckpt_{config['program_sha256'][:8]}"))
    load_model(model, str(directory / "model.safetensors"), device=str(device))
    model.to(device).eval()
    tokenizer_file = directory / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file.exists() else None
    return Checkpoint(model=model, tokenizer=tokenizer, config=config)
