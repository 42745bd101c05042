"""Batched scoring and greedy decoding over any causal model that maps token ids to logits.

A `forward` is `LongTensor[B, T] -> FloatTensor[B, T, V]`. Sequences are right-padded: in a causal
model padding after a token cannot change that token's logits, so one batch can mix lengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from trainer.progress import progress as progress_bar

Forward = Callable[[torch.Tensor], torch.Tensor]
# (ids [B, T], one [start, end) per row) -> the logits of those positions, one tensor per row. A model in
# another process (trainer.boundary) sends back only these instead of B x T x V logits.
Gather = Callable[[torch.Tensor, list[tuple[int, int]]], list[torch.Tensor]]


def gather_from(forward: Forward) -> Gather:
    """A `Gather` that runs the whole forward pass and slices it."""
    def gather(ids: torch.Tensor, slices: list[tuple[int, int]]) -> list[torch.Tensor]:
        logits = forward(ids)
        return [logits[row, start:end] for row, (start, end) in enumerate(slices)]
    return gather


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
    return ids


def score_continuations(forward: Forward, pairs: Sequence[tuple[list[int], list[int]]], *, max_length: int,
                        batch_size: int, pad_id: int, progress: bool = False,
                        desc: str = "loglikelihood", gather: Gather | None = None) -> list[tuple[float, bool]]:
    """(sum of the continuation's log-probabilities, whether greedy decoding yields it) for each pair.

    As lm-eval's HF model: the model reads (context + continuation) minus its last token, truncated
    from the left to `max_length`; a continuation longer than the window is scored on its last
    `max_length` tokens. Pairs whose model input is identical (the choices of a multiple-choice
    question that are one token long) share one forward pass; inputs run longest first, so the
    batch shape only shrinks and a memory error would show at once.
    """
    pairs = [(list(context), list(continuation)[-max_length:]) for context, continuation in pairs]
    inputs: dict[tuple[int, ...], list[int]] = {}  # model input -> indices of the pairs that read it
    for i, (context, continuation) in enumerate(pairs):
        if not context:
            raise ValueError("a continuation needs at least one context token (the prefix token when empty)")
        if continuation:
            inputs.setdefault(tuple((context + continuation)[-(max_length + 1):][:-1]), []).append(i)
    order = sorted(inputs, key=lambda key: (-len(key), key))
    results: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)  # an empty continuation is certain
    gather = gather or gather_from(forward)
    bar = progress_bar(total=len(order), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        spans = [max(len(pairs[i][1]) for i in inputs[key]) for key in batch]
        # Only the positions that predict a continuation are fetched and go through the softmax.
        slices = [(len(key) - span, len(key)) for key, span in zip(batch, spans, strict=True)]
        pieces = gather(pad_right(batch, pad_id), slices)
        for key, span, piece in zip(batch, spans, pieces, strict=True):
            logprobs = F.log_softmax(piece.float(), dim=-1).cpu()
            for i in inputs[key]:
                continuation = torch.tensor(pairs[i][1], dtype=torch.long)
                scores = logprobs[span - len(continuation):]
                total = scores.gather(-1, continuation[:, None]).sum().item()
                if math.isnan(total):
                    # Accuracy over NaN scores would still come out a number: stop here instead.
                    raise FloatingPointError("the model gave NaN log-probabilities")
                results[i] = (total, bool((scores.argmax(-1) == continuation).all()))
        bar.update(len(batch))
    bar.close()
    return results


def greedy_generate(forward: Forward, prompts: Sequence[list[int]], *, max_new_tokens: Sequence[int],
                    max_length: int, batch_size: int, pad_id: int, eot_id: int | None,
                    should_stop: Callable[[int, list[int]], bool], progress: bool = False,
                    gather: Gather | None = None) -> list[list[int]]:
    """Greedy continuations of each prompt, a batch of prompts at a time.

    Each step runs the model over every unfinished sequence (no cache: the model is a plain
    ids-to-logits function) and appends the most likely token at each sequence's own last position.
    A sequence stops at the end-of-text token, at its token budget, or when `should_stop(index,
    generated)` says so (a stop string appeared).
    """
    gather = gather or gather_from(forward)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[list[int]] = [[] for _ in prompts]
    for start in progress_bar(range(0, len(order), batch_size), desc="generate", disable=not progress, leave=False):
        active = [i for i in order[start:start + batch_size] if max_new_tokens[i] > 0]
        while active:
            windows = [(prompts[i] + outputs[i])[-max_length:] for i in active]
            last = gather(pad_right(windows, pad_id), [(len(window) - 1, len(window)) for window in windows])
            next_ids = [int(piece[-1].argmax()) for piece in last]
            still = []
            for i, token in zip(active, next_ids, strict=True):
                if token == eot_id:
                    continue
                outputs[i].append(token)
                if len(outputs[i]) < max_new_tokens[i] and not should_stop(i, outputs[i]):
                    still.append(i)
            active = still
    return outputs
