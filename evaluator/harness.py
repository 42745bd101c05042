"""An lm-evaluation-harness model over our checkpoints: `lm_eval --model discovery --model_args checkpoint=DIR`.

The adapter follows lm-eval's own HF model (`HFLM`) request by request, so numbers are comparable:
loglikelihood requests are encoded the same way (trailing context whitespace moves to the
continuation; an empty context is the end-of-text token), truncated from the left to the model's
length, batched longest first, and scored with a log-softmax; rolling loglikelihoods use lm-eval's
disjoint windows; generation is greedy until a stop string.

It works with any causal model that maps token ids [B, T] to logits [B, T, V] (our `trainer.model.LM`,
or a Hugging Face model) and a tokenizer with `encode` (a `tokenizers.Tokenizer` or a Hugging Face one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

EVAL_LENGTH = 1024


class TokenizerAdapter:
    """One `encode(text) -> ids` / `decode(ids) -> text` over both tokenizer libraries, no special tokens added."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.fast = hasattr(tokenizer, "encode_batch")  # a `tokenizers.Tokenizer`

    def encode(self, text: str) -> list[int]:
        if self.fast:
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


@register_model("discovery")
class DiscoveryLM(LM):
    def __init__(self, checkpoint: str | None = None, model=None, tokenizer=None, eot_token_id: int | None = None,
                 max_length: int | None = None, batch_size: int | str = 16, device: str = "cpu",
                 max_gen_toks: int = 48, **kwargs):
        super().__init__()
        if checkpoint is not None:
            from trainer.checkpoint import load_checkpoint

            loaded = load_checkpoint(checkpoint, device=device)
            model, tokenizer = loaded.model, loaded.tokenizer
            eot_token_id = loaded.config["eos_token_id"] if eot_token_id is None else eot_token_id
            # Recurrent layers run at any length: evaluate on windows of at least EVAL_LENGTH tokens, so long
            # prompts are not cut to the (short, at smoke scale) training length.
            max_length = max_length or max(loaded.config["max_seq_len"], EVAL_LENGTH)
        if model is None or tokenizer is None or eot_token_id is None or max_length is None:
            raise ValueError("give a checkpoint, or a model, tokenizer, eot_token_id and max_length")
        self.model = model.eval()
        self.tokenizer = TokenizerAdapter(tokenizer)
        self.eot_token_id, self.max_length = int(eot_token_id), int(max_length)
        self.batch_size = 16 if str(batch_size).startswith("auto") else int(batch_size)
        self._device = torch.device(device)
        self.max_gen_toks = int(max_gen_toks)

    # ---------------------------------------------------------------- model calls

    @torch.no_grad()
    def _logprobs(self, batch: list[list[int]]) -> torch.Tensor:
        """Log-probabilities [B, T, V] for right-padded token lists (padding never affects a causal prefix)."""
        width = max(len(tokens) for tokens in batch)
        ids = torch.full((len(batch), width), self.eot_token_id, dtype=torch.long)
        for row, tokens in enumerate(batch):
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        out = self.model(ids.to(self._device))
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return F.log_softmax(logits.float(), dim=-1).cpu()

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        return context_ids, whole[len(context_ids):]

    def _score(self, pairs: list[tuple[list[int], list[int]]], desc: str, progress: bool) -> list[tuple[float, bool]]:
        """(sum of continuation log-probabilities, whether greedy decoding gives it) per pair."""
        # A continuation longer than the window is scored on its last max_length tokens only.
        pairs = [(context, continuation[-self.max_length:]) for context, continuation in pairs]
        inputs = [(context + continuation)[-(self.max_length + 1):][:-1] for context, continuation in pairs]
        order = sorted(range(len(pairs)), key=lambda i: -len(inputs[i]))
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, disable=not progress, leave=False):
            rows = order[start:start + self.batch_size]
            logprobs = self._logprobs([inputs[i] for i in rows])
            for row, i in enumerate(rows):
                continuation = pairs[i][1]
                length = len(inputs[i])
                scores = logprobs[row, length - len(continuation):length]
                target = torch.tensor(continuation, dtype=torch.long)
                total = scores.gather(-1, target[:, None]).sum().item()
                results[i] = (total, bool((scores.argmax(-1) == target).all()))
        return results

    # ---------------------------------------------------------------- lm-eval's interface

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = []
        for request in requests:
            context, continuation = request.args
            if context == "":
                pairs.append(([self.eot_token_id], self.tokenizer.encode(continuation)))
            else:
                pairs.append(self._encode_pair(context, continuation))
        return self._score(pairs, "loglikelihood", not disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        totals = []
        for request in tqdm(requests, desc="rolling loglikelihood", disable=disable_tqdm, leave=False):
            tokens = self.tokenizer.encode(request.args[0])
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=tokens, prefix_token=self.eot_token_id, max_seq_len=self.max_length, context_len=1)]
            scores = self._score([(list(c), list(t)) for c, t in windows], "windows", False)
            totals.append(sum(score for score, _ in scores))
        return totals

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        for request in tqdm(requests, desc="generate", disable=disable_tqdm, leave=False):
            context, options = request.args
            until = options.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            limit = int(options.get("max_gen_toks", self.max_gen_toks))
            tokens = self.tokenizer.encode(context) or [self.eot_token_id]
            generated: list[int] = []
            text = ""
            for _ in range(limit):
                window = (tokens + generated)[-self.max_length:]
                next_id = int(self._logprobs([window])[0, -1].argmax())
                if next_id == self.eot_token_id:
                    break
                generated.append(next_id)
                text = self.tokenizer.decode(generated)
                if any(stop in text for stop in until):
                    break
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs
