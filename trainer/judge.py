"""Trusted judgements from a candidate's logits: loss, task accuracy, and leaks of the future or the batch.

    report = leak_checks(model, vocab_size=2048, lengths=[128, 17, 200], generator=g)
    loss, probes = validation_loss(model, inputs, labels, batch_size=16, generator=g)

`model` is any ids -> logits callable; for a candidate it is `trainer.boundary.SandboxedModel`, so the
numbers here are computed in the parent from outputs alone. A leak shows as logits that change when
only later tokens (or other rows of the batch) change. The same probes ride inside the validation
batches, indistinguishable from the windows being scored, so a program that is causal only when it
is being checked still gets caught on the data that decides its loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Logits of a causal model at a position may differ by rounding alone; anything larger is information
# from outside the prefix. Relative to the row's largest logit; bfloat16 rounds about 100x coarser.
TOLERANCE = {"float32": 1e-3, "bfloat16": 3e-2}
MODES = (("eval", False, False), ("train", True, True), ("eval with grad", False, True), ("train no grad", True, False))


class LeakFound(ValueError):
    """The model's logits depend on tokens they must not see."""


def _difference(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = max(1.0, float(a.abs().max()), float(b.abs().max()))
    return float((a - b).abs().max()) / scale


def _perturbed(rows: torch.Tensor, cut: int, donor: torch.Tensor) -> torch.Tensor:
    """A copy of `rows[0]` whose tokens after `cut` come from `donor` (real text, so it looks like any row)."""
    probe = rows[0].clone()
    probe[cut + 1:] = donor[cut + 1:]
    if torch.equal(probe, rows[0]):  # the donor agreed everywhere after the cut: change one token by hand
        probe[-1] = (probe[-1] + 1) % int(rows.max() + 2)
    return probe


def probe_batch(batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """The batch with one probe row appended: row 0 with its future replaced after a random cut."""
    length = batch.shape[1]
    cut = int(torch.randint(0, max(1, length - 1), (1,), generator=generator))
    donor = batch[1] if len(batch) > 1 else torch.randint(0, int(batch.max()) + 1, (length,), generator=generator)
    return torch.cat([batch, _perturbed(batch, cut, donor)[None]]), cut


def check_probe(logits: torch.Tensor, cut: int, tolerance: float, where: str) -> float:
    """Compare row 0 with the appended probe (the last row) up to the cut; raise LeakFound when they differ."""
    difference = _difference(logits[0, :cut + 1], logits[-1, :cut + 1])
    if difference > tolerance:
        raise LeakFound(f"{where}: the logits at positions 0..{cut} changed when only later tokens changed "
                        f"(relative difference {difference:.3g}, tolerance {tolerance:g}): the layer sees the future")
    return difference


def check_alone(model, batch: torch.Tensor, logits: torch.Tensor, tolerance: float, where: str, **mode) -> float:
    """Row 0 computed on its own must match row 0 computed within its batch."""
    alone = model.request(batch[:1], **mode) if mode else model(batch[:1])
    difference = _difference(logits[0], alone[0])
    if difference > tolerance:
        raise LeakFound(f"{where}: a sequence's logits depend on the other sequences of its batch "
                        f"(relative difference {difference:.3g}, tolerance {tolerance:g})")
    return difference


def leak_checks(model, *, vocab_size: int, lengths: list[int], generator: torch.Generator, batch_size: int = 3,
                tolerance: float = TOLERANCE["float32"]) -> list[dict]:
    """Causality and batch independence at each length and in each mode (train/eval, with/without grad).

    Returns check records {name, ok, hard, detail}; the first leak ends the checks.
    """
    checks = []
    for length in lengths:
        for mode, train, grad in MODES:
            where = f"length {length}, {mode} mode"
            batch = torch.randint(0, vocab_size, (batch_size, length), generator=generator)
            probed, cut = probe_batch(batch, generator)
            try:
                logits = model.request(probed, train=train, grad=grad)
                check_probe(logits, cut, tolerance, where)
                check_alone(model, batch, logits, tolerance, where, train=train, grad=grad)
            except LeakFound as leak:
                return [*checks, {"name": "trusted_causality", "ok": False, "hard": True, "detail": str(leak)}]
            checks.append(where)
    detail = f"causal and batch-independent at lengths {lengths} in {len(MODES)} modes, judged from logits"
    return [{"name": "trusted_causality", "ok": True, "hard": True, "detail": detail}]


def labelled_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """(sum of next-token losses over labelled positions, how many): label -100 is ignored."""
    targets = labels[:, 1:]
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(), targets.reshape(-1),
                             ignore_index=-100, reduction="sum")
    return float(losses), int((targets != -100).sum())


def validation_loss(model, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                    generator: torch.Generator, tolerance: float = TOLERANCE["float32"]) -> dict:
    """Mean loss per labelled token, with a leak probe in every batch and a batch-independence check.

    Raises LeakFound at the first leak. Returns {val_loss, probes, max_difference}.
    """
    total, count, worst = 0.0, 0, 0.0
    for start in range(0, len(inputs), batch_size):
        batch, targets = inputs[start:start + batch_size], labels[start:start + batch_size]
        probed, cut = probe_batch(batch, generator)
        logits = model(probed)
        worst = max(worst, check_probe(logits, cut, tolerance, f"validation batch {start // batch_size}"))
        if start == 0:
            worst = max(worst, check_alone(model, batch, logits, tolerance, "validation batch 0"))
        loss, labelled = labelled_loss(logits[:len(batch)], targets)
        total, count = total + loss, count + labelled
    if not count:
        raise ValueError("the validation set has no labelled tokens")
    return {"val_loss": total / count, "probes": -(-len(inputs) // batch_size), "max_difference": worst}
