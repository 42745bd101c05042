"""Checkpoints the evaluator can load: weights, model config, the program and the tokenizer.

    DIR/model.safetensors   weights
    DIR/config.json         {"lm": LMConfig, "program_sha256": ..., "fidelity": ..., ...}
    DIR/program.py          the layer program the weights belong to
    DIR/tokenizer.json      the tokenizer the model was trained with
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


def save_checkpoint(directory: Path, model: LM, program: str, tokenizer, **meta) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / "model.safetensors"))
    (directory / "program.py").write_text(program)
    if tokenizer is not None:  # synthetic tasks have token ids and no text
        tokenizer.save(str(directory / "tokenizer.json"))
    config = {"lm": model.config.to_dict(), "program_sha256": sha256(program),
              "eos_token_id": model.config.eos_token_id, "max_seq_len": model.config.max_seq_len, **meta}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    return directory


@dataclass
class Checkpoint:
    model: LM
    tokenizer: object | None  # tokenizers.Tokenizer; None for synthetic tasks
    config: dict


def load_checkpoint(directory: Path, device: str | torch.device = "cpu") -> Checkpoint:
    from tokenizers import Tokenizer

    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"no checkpoint in {directory} (config.json is missing)")
    config = json.loads((directory / "config.json").read_text())
    program = (directory / "program.py").read_text()
    if sha256(program) != config["program_sha256"]:
        raise ValueError(f"{directory}/program.py does not match the sha256 recorded in its config")
    model = LM(LMConfig.from_dict(config["lm"]), load_layer_class(program, name=f"ckpt_{config['program_sha256'][:8]}"))
    load_model(model, str(directory / "model.safetensors"), device=str(device))
    model.to(device).eval()
    tokenizer_file = directory / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file.exists() else None
    return Checkpoint(model=model, tokenizer=tokenizer, config=config)
