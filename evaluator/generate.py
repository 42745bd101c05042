"""Playground: sample text from a trained candidate, its code kept in the sandbox.

    python -m evaluator.generate --checkpoint RUN/.../checkpoint --prompt "The river" --max-new-tokens 40

The candidate's program runs only in a sandboxed model server (`trainer.boundary.SandboxedModel`),
which answers logits for token ids. This process tokenises, samples and decodes: temperature
scaling, top-k and the random generator are ours, so a seed gives the same text every time. The
text streams to stdout as it is sampled; what happens around it goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.cli import Parser, UsageError, checkpoint_dir, device_name, guard, non_negative_int, positive_int

if TYPE_CHECKING:
    import torch


def temperature_value(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= number <= 100:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 (greedy) and 100")
    return number


def next_token(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator) -> int:
    """One token from a [V] row of logits: greedy at temperature 0, else sampled from the top k (0: all)."""
    import torch

    logits = logits.float()
    if temperature == 0:
        return int(logits.argmax())
    if 0 < top_k < logits.numel():
        cutoff = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < cutoff, float("-inf"))
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class Stream:
    """Writes the prompt, then the decoded text as it grows, holding back an unfinished multi-byte character.

    Nothing is written before the model's first answer, so a model that fails leaves only the error line.
    """

    def __init__(self, tokenizer, out=sys.stdout, prompt: str = ""):
        self.tokenizer, self.out, self.prompt, self.shown = tokenizer, out, prompt, None

    def _write(self, text: str) -> None:
        if self.shown is None:
            self.out.write(self.prompt)
            self.shown = ""
        self.out.write(text)
        self.out.flush()

    def update(self, ids: list[int]) -> None:
        text = self.tokenizer.decode(ids)
        if text.endswith("\ufffd") or not text.startswith(self.shown or ""):
            return
        self._write(text[len(self.shown or ""):])
        self.shown = text

    def finish(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids)
        self._write(text[len(self.shown or ""):] + "\n")
        return text


def _load_tokenizer(directory: Path):
    from tokenizers import Tokenizer

    path = directory / "tokenizer.json"
    if not path.is_file():
        raise UsageError(f"{directory} has no tokenizer.json: it was trained on token ids (a synthetic task), "
                         "so there is no text to sample")
    return Tokenizer.from_file(str(path))


def _verified(directory: Path) -> dict:
    from trainer.checkpoint import verify_checkpoint

    try:
        config = verify_checkpoint(directory)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise UsageError(f"not a usable checkpoint: {err}") from None
    if "lm" not in config or not (directory / "model.safetensors").is_file():
        raise UsageError(f"not a trained checkpoint (no model.safetensors or model config): {directory}")
    return config


def sample(model, prompt_ids: list[int], *, max_new_tokens: int, window: int, eos_id: int | None,
           temperature: float = 1.0, top_k: int = 0, seed: int = 0, on_token=None) -> list[int]:
    """New token ids after the prompt, from a callable mapping ids [1, T] to logits [1, T, V].

    The model sees at most the last `window` tokens: the length it was trained on, beyond which its
    behaviour was never measured.
    """
    import torch  # here, not at the top: a mistyped argument is reported without waiting for torch

    generator = torch.Generator().manual_seed(seed)
    ids, new = list(prompt_ids), []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids[-window:]], dtype=torch.int64))
        token = next_token(logits[0, -1], temperature, top_k, generator)
        if token == eos_id:
            break
        ids.append(token)
        new.append(token)
        if on_token is not None:
            on_token(new)
    return new


def generate(directory: Path, prompt: str, *, max_new_tokens: int = 50, temperature: float = 1.0, top_k: int = 0,
             seed: int = 0, device: str = "cpu", out=sys.stdout, log=sys.stderr) -> str:
    """Sample a continuation of `prompt` from the checkpoint in `directory`, streaming it to `out`."""
    from trainer.boundary import ModelFailed, SandboxedModel
    from trainer.jail import SandboxUnavailable

    directory = Path(directory)
    config = _verified(directory)
    tokenizer = _load_tokenizer(directory)
    lm = config["lm"]
    eos_id = lm.get("eos_token_id")
    # An empty prompt starts from the end-of-text token, as documents did in training.
    prompt_ids = tokenizer.encode(prompt).ids or [eos_id if eos_id is not None else 0]
    stream = Stream(tokenizer, out, prompt)
    print(f"starting the candidate's model server in the sandbox ({device})...", file=log, flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="generate-") as workdir:
        model = SandboxedModel(directory, workdir=Path(workdir), device=device)
        try:
            new = sample(model, prompt_ids, max_new_tokens=max_new_tokens, window=int(lm.get("max_seq_len", 2048)),
                         eos_id=eos_id, temperature=temperature, top_k=top_k, seed=seed, on_token=stream.update)
        except SandboxUnavailable as err:
            raise UsageError(str(err)) from None
        except ModelFailed as err:
            raise UsageError(f"the candidate's model failed: {err}") from None
        finally:
            model.close()
    text = stream.finish(new)
    print(f"{len(new)} tokens in {time.monotonic() - started:.1f} s", file=log, flush=True)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=checkpoint_dir,
                        help="a trained candidate's checkpoint folder (model.safetensors, config.json, program.py)")
    parser.add_argument("--prompt", required=True, help="the text to continue (may be empty)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=50)
    parser.add_argument("--temperature", type=temperature_value, default=1.0, help="0 picks the likeliest token")
    parser.add_argument("--top-k", type=non_negative_int, default=50, help="sample from the k likeliest (0: all)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:1")
    args = parser.parse_args(argv)
    generate(args.checkpoint, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
             top_k=args.top_k, seed=args.seed, device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(guard(main))
