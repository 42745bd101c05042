"""Trusted judgements from logits alone: leaks of the future or of the batch are caught, losses are exact."""

import pytest
import torch
import torch.nn.functional as F

from trainer.judge import LeakFound, labelled_loss, leak_checks, validation_loss

VOCAB = 32


class Model:
    """An ids -> logits model with a switchable leak; `request` takes the modes as the sandboxed one does."""

    def __init__(self, leak=None):
        torch.manual_seed(0)
        self.embed = torch.randn(VOCAB, VOCAB)
        self.leak = leak

    def request(self, ids, slices=None, *, train=False, grad=False):
        x = self.embed[ids].cumsum(1)  # causal: position t sums tokens 0..t
        if self.leak == "future" or (self.leak == "length" and ids.shape[1] == 64) or \
                (self.leak == "eval" and not train and not grad):
            x = x + self.embed[ids.roll(-1, dims=1)]
        if self.leak == "batch":
            x = x + x.mean(0, keepdim=True)
        return x

    def __call__(self, ids):
        return self.request(ids)


def test_causal_model_passes_every_length_and_mode():
    checks = leak_checks(Model(), vocab_size=VOCAB, lengths=[64, 9, 130], generator=torch.Generator().manual_seed(1))
    assert checks[0]["ok"], checks


@pytest.mark.parametrize("leak", ["future", "length", "eval", "batch"])
def test_every_kind_of_leak_is_caught(leak):
    checks = leak_checks(Model(leak), vocab_size=VOCAB, lengths=[64, 9, 130],
                         generator=torch.Generator().manual_seed(1))
    assert not checks[0]["ok"]
    assert ("batch" in checks[0]["detail"]) == (leak == "batch")


def test_validation_loss_is_the_labelled_cross_entropy():
    model, ids = Model(), torch.randint(0, VOCAB, (10, 64), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[:, :20] = -100  # only the answer positions count, as in the synthetic tasks
    found = validation_loss(model, ids, labels, batch_size=4, generator=torch.Generator().manual_seed(3))
    logits = model(ids)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB).double(), labels[:, 1:].reshape(-1),
                               ignore_index=-100)
    assert found["val_loss"] == pytest.approx(float(expected), rel=1e-9)
    assert found["probes"] == 3
    assert labelled_loss(logits, labels)[1] == int((labels[:, 1:] != -100).sum())


def test_a_leak_at_the_validation_length_is_caught_on_the_validation_batches():
    ids = torch.randint(0, VOCAB, (8, 64), generator=torch.Generator().manual_seed(4))
    with pytest.raises(LeakFound, match="sees the future"):
        validation_loss(Model("length"), ids, ids, batch_size=4, generator=torch.Generator().manual_seed(5))
    with pytest.raises(LeakFound, match="other sequences"):
        validation_loss(Model("batch"), ids, ids, batch_size=4, generator=torch.Generator().manual_seed(5))
