"""An lm-evaluation-harness model over our checkpoints, registered as `discovery`.

    python -m evaluator.lm_eval_cli --model discovery --model_args checkpoint=DIR --tasks ... (see there)
    DiscoveryLM.from_checkpoint(DIR)                      # in Python
    DiscoveryLM(model, tokenizer, eot_token_id=0, max_length=1024)   # any ids -> logits model

The adapter follows lm-eval's own HF model (`HFLM`) request by request, so its numbers can be
compared with published ones: a (context, continuation) pair is encoded as a whole and split at the
context's length, trailing context whitespace moving to the continuation; an empty context becomes
the prefix (end-of-text) token; inputs are truncated from the left to `max_length`; rolling
loglikelihoods use lm-eval's disjoint windows; generation is greedy until a stop string. Unlike HFLM
no special tokens are ever added by the tokenizer: the prefix token is the only one.

A checkpoint's model runs in a sandboxed child (`trainer.boundary.SandboxedModel`) that returns the
logits of the positions asked for; every number is computed here.

Checkpoints of recurrent (linear-attention) models have no position limit, so `from_checkpoint`
evaluates on windows of at least EVAL_LENGTH tokens: long prompts (BoolQ passages, far key-value
lookups) are not cut to the short training length of a smoke run. `max_length=` overrides it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from evaluator.scoring import gather_from, greedy_generate, score_continuations

EVAL_LENGTH = 1024
DEFAULT_BATCH_SIZE = 32


class TokenizerAdapter:
    """`encode(text) -> ids` and `decode(ids) -> text`, never adding special tokens.

    Accepts a `tokenizers.Tokenizer` (what checkpoints store), a Hugging Face tokenizer, or any object
    with `encode`/`decode` over lists of ints.
    """

    def __init__(self, tokenizer):
        self.inner = tokenizer
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - tokenizers ships with transformers
            Tokenizer = ()
        if isinstance(tokenizer, Tokenizer):
            self._encode = lambda text: tokenizer.encode(text, add_special_tokens=False).ids
        elif hasattr(tokenizer, "convert_tokens_to_ids"):  # a Hugging Face tokenizer
            self._encode = lambda text: tokenizer.encode(text, add_special_tokens=False)
        else:
            self._encode = tokenizer.encode

    def encode(self, text: str) -> list[int]:
        ids = self._encode(text)
        return list(getattr(ids, "ids", ids))

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(list(ids))


def _batch_size(value) -> int:
    # lm-eval's CLI passes strings, "auto" included; memory probing is not worth it for small models.
    text = str(value)
    return DEFAULT_BATCH_SIZE if text.startswith("auto") else int(text)


@register_model("discovery")
class DiscoveryLM(LM):
    def __init__(self, model=None, tokenizer=None, *, eot_token_id: int | None = None, max_length: int | None = None,
                 batch_size: int | str = DEFAULT_BATCH_SIZE, device: str | torch.device | None = None,
                 prefix_token_id: int | None = None, max_gen_toks: int = 256, dtype: str = "auto",
                 checkpoint: str | None = None, progress: bool = True, workdir: str | None = None, **_ignored):
        """`model(ids[B, T])` returns logits [B, T, V] or an object with `.logits`; `checkpoint=` loads one
        instead (how lm-eval's CLI builds the model from `--model_args checkpoint=DIR`)."""
        super().__init__()
        device = torch.device(device or "cpu")
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")  # lm-eval's command line asks for cuda by default, as HFLM falls back
        if checkpoint is not None:
            # The child runs the model on the device, in the precision it trained in; logits come back on the CPU.
            model, tokenizer, eot_token_id, max_length = _load(checkpoint, device, eot_token_id, max_length, workdir)
            device, dtype = torch.device("cpu"), "float32"
        if model is None or tokenizer is None or eot_token_id is None or max_length is None:
            raise ValueError("give a checkpoint, or a model, tokenizer, eot_token_id and max_length")
        self.model = model.eval() if hasattr(model, "eval") else model
        self.tokenizer = tokenizer if isinstance(tokenizer, TokenizerAdapter) else TokenizerAdapter(tokenizer)
        self.eot_token_id = int(eot_token_id)
        self.prefix_token_id = self.eot_token_id if prefix_token_id is None else int(prefix_token_id)
        self.max_length = int(max_length)
        self.batch_size = _batch_size(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self._device = device  # lm-eval reads it through its `device` property
        self.progress = progress
        # "auto": bfloat16 autocast on CUDA (fla's fused kernels refuse float32), float32 on a CPU, unless the
        # checkpoint trained under bfloat16: programs written for it may cast by hand and then only run under
        # the same autocast, on any device.
        if dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"dtype must be auto, bfloat16 or float32, got {dtype!r}")
        self.autocast = dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda")

    @classmethod
    def from_checkpoint(cls, directory, *, device: str = "cpu", batch_size: int | str = DEFAULT_BATCH_SIZE,
                        max_length: int | None = None, **kwargs) -> DiscoveryLM:
        return cls(checkpoint=str(directory), device=device, batch_size=batch_size, max_length=max_length, **kwargs)

    # ---------------------------------------------------------------- model calls

    def close(self) -> None:
        """Stop the model's sandboxed child, if it has one."""
        if hasattr(self.model, "close"):
            self.model.close()

    @torch.no_grad()
    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model(ids.to(self._device))
        return out if isinstance(out, torch.Tensor) else out.logits

    def _gather(self, ids: torch.Tensor, slices: list[tuple[int, int]]) -> list[torch.Tensor]:
        if hasattr(self.model, "gather"):  # a model in a sandboxed child: fetch only the positions needed
            return self.model.gather(ids, slices)
        return gather_from(self._forward)(ids, slices)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            continuation_ids = self.tokenizer.encode(continuation)
            if continuation_ids and continuation_ids[0] == self.prefix_token_id:
                return continuation_ids[:1], continuation_ids[1:]
            return [self.prefix_token_id], continuation_ids
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        if not context_ids:  # a context of whitespace only: as an empty one (HFLM would fail an assertion)
            return [self.prefix_token_id], whole
        return context_ids, whole[len(context_ids):]

    def _score(self, pairs, progress: bool, desc: str) -> list[tuple[float, bool]]:
        return score_continuations(self._forward, pairs, max_length=self.max_length, batch_size=self.batch_size,
                                   pad_id=self.eot_token_id, progress=progress, desc=desc, gather=self._gather)

    # ---------------------------------------------------------------- lm-eval's interface

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self.encode_pair(*request.args) for request in requests]
        return self._score(pairs, self.progress and not disable_tqdm, "loglikelihood")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        # All windows of all documents are scored together, so batches stay full.
        windows, owners = [], []
        for index, request in enumerate(requests):
            tokens = self.tokenizer.encode(request.args[0])
            for window in get_rolling_token_windows(token_list=tokens, prefix_token=self.prefix_token_id,
                                                    max_seq_len=self.max_length, context_len=1):
                windows.append(make_disjoint_window(window))
                owners.append(index)
        scores = self._score(windows, self.progress and not disable_tqdm, "rolling loglikelihood")
        totals = [0.0] * len(requests)
        for index, (score, _) in zip(owners, scores, strict=True):
            totals[index] += score
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        prompts, budgets, stops = [], [], []
        for request in requests:
            context, options = request.args
            options = dict(options or {})
            until = options.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            budget = int(options.get("max_gen_toks", self.max_gen_toks))
            # Room for the answer: the prompt keeps its last (max_length - budget) tokens, as in HFLM.
            keep = max(1, self.max_length - budget)
            prompts.append((self.tokenizer.encode(context) or [self.prefix_token_id])[-keep:])
            budgets.append(budget)
            stops.append(until)

        def should_stop(index: int, generated: list[int]) -> bool:
            text = self.tokenizer.decode(generated)
            return any(stop in text for stop in stops[index])

        generated = greedy_generate(self._forward, prompts, max_new_tokens=budgets, max_length=self.max_length,
                                    batch_size=self.batch_size, pad_id=self.eot_token_id, eot_id=self.eot_token_id,
                                    should_stop=should_stop, progress=self.progress and not disable_tqdm,
                                    gather=self._gather)
        outputs = []
        for ids, until in zip(generated, stops, strict=True):
            text = self.tokenizer.decode(ids)
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs


def _load(checkpoint: str, device: torch.device, eot_token_id: int | None, max_length: int | str | None,
          workdir: str | None):
    """A checkpoint's model as a sandboxed child (trainer.boundary): its program never runs in this process."""
    import tempfile

    from tokenizers import Tokenizer

    from trainer.boundary import SandboxedModel
    from trainer.checkpoint import verify_checkpoint

    config = verify_checkpoint(Path(checkpoint))
    tokenizer_file = Path(checkpoint) / "tokenizer.json"
    if not tokenizer_file.exists():
        raise FileNotFoundError(f"{checkpoint} has no tokenizer.json: it was trained on token ids, not text")
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="discovery-eval-"))
    model = SandboxedModel(Path(checkpoint), workdir=workdir, device=str(device))
    eot = config["eos_token_id"] if eot_token_id is None else eot_token_id
    length = int(max_length) if max_length else max(int(config["max_seq_len"]), EVAL_LENGTH)
    return model, Tokenizer.from_file(str(tokenizer_file)), eot, length
