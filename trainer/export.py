"""Export a trained candidate as a transformers model folder, for use and for training at scale.

    python -m trainer.export --checkpoint RUN/.../checkpoint --out HF_DIR

HF_DIR loads with `AutoModelForCausalLM.from_pretrained(HF_DIR, trust_remote_code=True)` and
`AutoTokenizer.from_pretrained(HF_DIR)`, and gives the project's logits. It holds:

    config.json, generation_config.json     the shell's config (LMConfig) and the auto_map to the code below
    model.safetensors                       the checkpoint's weights, renamed under `lm.`
    modeling_discovery.py, configuration_discovery.py, fla_route.py   the wrapper (trainer/hf_remote)
    lm_shell.py, fla_cpu.py                 the project's LM shell and fla stand-ins, copied unchanged
    layer_program.py                        the candidate's program, copied unchanged
    tokenizer.json, tokenizer_config.json   the tokenizer it was trained with
    flame_config.json                       fla's DeltaNet config (what flame trains) with this model's shape
    README.md                               what it is and how to train the layer at a larger scale

The candidate's program is untrusted: the exporter verifies the checkpoint's hashes and copies the
program as text, never importing it. Loading the folder runs it, as trust_remote_code says.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from trainer.cli import Parser, UsageError, checkpoint_dir, guard

HERE = Path(__file__).resolve().parent
REMOTE = HERE / "hf_remote"
COPIED = {"lm_shell.py": HERE / "model.py", "fla_cpu.py": HERE / "fla_cpu.py"}
MODEL_TYPE = "discovery_linear_lm"
# Seed keyword arguments that fla's DeltaNetConfig names the same way.
FLA_LAYER_KEYS = ("expand_k", "expand_v", "use_beta", "use_gate", "use_short_conv", "conv_size")


def _read_checkpoint(directory: Path) -> dict:
    from trainer.checkpoint import verify_checkpoint

    try:
        config = verify_checkpoint(directory)
    except (FileNotFoundError, ValueError, KeyError) as err:  # a broken config.json is a ValueError too
        raise UsageError(f"not a usable checkpoint: {err}") from None
    if "lm" not in config or not (directory / "model.safetensors").is_file():
        raise UsageError(f"not a trained checkpoint (no weights or model config): {directory}")
    return config


def _write_weights(source: Path, out: Path, tied: bool) -> None:
    """The checkpoint's tensors under the wrapper's `lm.` prefix; a tied head is stored once, as the embedding."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source))
    if tied:
        # safetensors keeps one name of a shared tensor, either may be the one stored.
        embedding = tensors.pop("embed.weight", None)
        head = tensors.pop("head.weight", None)
        tensors["embed.weight"] = embedding if embedding is not None else head
    save_file({f"lm.{name}": t.contiguous() for name, t in tensors.items()}, str(out), metadata={"format": "pt"})


def _write_code(program: str, out: Path) -> None:
    from trainer.layers import FLA_SURFACE

    for name in ("configuration_discovery.py", "modeling_discovery.py"):
        shutil.copyfile(REMOTE / name, out / name)
    route = (REMOTE / "fla_route.py").read_text()
    placeholder = "FLA_SURFACE = {}\n"
    if placeholder not in route:
        raise RuntimeError("hf_remote/fla_route.py lost its FLA_SURFACE placeholder")
    (out / "fla_route.py").write_text(route.replace(placeholder, f"FLA_SURFACE = {FLA_SURFACE!r}\n"))
    for name, source in COPIED.items():
        shutil.copyfile(source, out / name)
    (out / "layer_program.py").write_text(program)


def _eos_token(tokenizer_file: Path, eos_id: int) -> str | None:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_file)).id_to_token(eos_id)


def _write_tokenizer(checkpoint: Path, out: Path, lm: dict) -> bool:
    source = checkpoint / "tokenizer.json"
    if not source.is_file():  # synthetic-task checkpoints have token ids and no text
        for stale in ("tokenizer.json", "tokenizer_config.json"):  # from an earlier export, with --overwrite
            (out / stale).unlink(missing_ok=True)
        return False
    shutil.copyfile(source, out / "tokenizer.json")
    eos = _eos_token(source, lm.get("eos_token_id", 0))
    # The model takes no token_type_ids: without the names, `generate(**tokenizer(text))` would pass them.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": lm.get("max_seq_len"),
              "clean_up_tokenization_spaces": False, "eos_token": eos, "pad_token": eos,
              "model_input_names": ["input_ids", "attention_mask"]}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return True


def _write_configs(config: dict, out: Path) -> None:
    lm = config["lm"]
    hf = {"architectures": ["DiscoveryForCausalLM"], "model_type": MODEL_TYPE,
          "auto_map": {"AutoConfig": "configuration_discovery.DiscoveryConfig",
                       "AutoModelForCausalLM": "modeling_discovery.DiscoveryForCausalLM"},
          "lm": lm, "program_sha256": config["program_sha256"], "tie_word_embeddings": lm.get("tie_embeddings", True),
          "vocab_size": lm["vocab_size"], "hidden_size": lm["hidden_size"], "num_hidden_layers": lm["num_layers"],
          "num_attention_heads": lm["num_heads"], "max_position_embeddings": lm["max_seq_len"],
          "eos_token_id": lm.get("eos_token_id"), "dtype": "float32",
          # Where it came from: fidelity, training dtype, seals; everything but what is restated above.
          "discovery": {k: v for k, v in config.items() if k not in ("lm", "program_sha256")}}
    (out / "config.json").write_text(json.dumps(hf, indent=1))
    eos = lm.get("eos_token_id")
    generation = {"eos_token_id": eos, "pad_token_id": eos, "use_cache": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=1))


def flame_config(lm: dict) -> dict:
    """fla's DeltaNetConfig (what flame trains) with the shape of the exported model; scale it up from there."""
    mlp_inner = 32 * -(-int(lm["hidden_size"] * lm.get("mlp_ratio", 4.0) * 2 / 3) // 32)  # as trainer.model.SwiGLU
    config = {"model_type": "delta_net", "attn_mode": "chunk", "hidden_size": lm["hidden_size"],
              "num_hidden_layers": lm["num_layers"], "num_heads": lm["num_heads"],
              "expand_k": 1.0, "expand_v": 1.0, "use_beta": True, "use_gate": True, "use_short_conv": True,
              "conv_size": 4, "qk_activation": "silu", "qk_norm": "l2", "use_output_norm": True,
              "hidden_act": "swish", "hidden_ratio": lm.get("mlp_ratio", 4.0), "intermediate_size": mlp_inner,
              "norm_eps": lm.get("norm_eps", 1e-5), "max_position_embeddings": lm["max_seq_len"],
              "vocab_size": lm["vocab_size"], "tie_word_embeddings": lm.get("tie_embeddings", True),
              "initializer_range": lm.get("initializer_range", 0.02), "eos_token_id": lm.get("eos_token_id", 0)}
    config.update({k: v for k, v in lm.get("layer_kwargs", {}).items() if k in FLA_LAYER_KEYS})
    return config


def _is_seed(program: str, lm: dict) -> bool:
    from trainer.layers import seed_program

    # The seed with keyword arguments fla does not name would not be the layer fla builds.
    return program == seed_program() and set(lm.get("layer_kwargs", {})) <= set(FLA_LAYER_KEYS)


def export(checkpoint: Path, out: Path, *, overwrite: bool = False) -> dict:
    """Write the export folder; returns a summary. Raises UsageError on a user's mistake."""
    checkpoint, out = Path(checkpoint), Path(out)
    config = _read_checkpoint(checkpoint)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise UsageError(f"--out {out} exists and is not an empty directory (pass --overwrite to replace its files)")
    program = (checkpoint / "program.py").read_text()
    lm = config["lm"]
    out.mkdir(parents=True, exist_ok=True)
    _write_weights(checkpoint / "model.safetensors", out / "model.safetensors", lm.get("tie_embeddings", True))
    _write_code(program, out)
    _write_configs(config, out)
    has_tokenizer = _write_tokenizer(checkpoint, out, lm)
    seed = _is_seed(program, lm)
    # The seed is fla's own DeltaNet; any other layer keeps fla's interface and takes its place (README).
    (out / "flame_config.json").write_text(json.dumps(flame_config(lm), indent=1))
    from trainer.export_readme import readme

    (out / "README.md").write_text(readme(config, seed=seed, has_tokenizer=has_tokenizer))
    return {"out": str(out), "program_sha256": config["program_sha256"], "tokenizer": has_tokenizer,
            "seed": seed}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=checkpoint_dir,
                        help="a trained candidate's checkpoint folder (model.safetensors, config.json, program.py)")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of a non-empty --out")
    args = parser.parse_args(argv)
    summary = export(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"exported {args.checkpoint} to {summary['out']}"
          + ("" if summary["tokenizer"] else " (no tokenizer: the checkpoint has none)")
          + ("" if summary["seed"] else "; README.md says how to train the layer with fla"), file=sys.stderr)
    print(summary["out"])
    return 0


if __name__ == "__main__":
    raise SystemExit(guard(main))
