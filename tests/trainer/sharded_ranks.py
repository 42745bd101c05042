"""One FSDP step checked against one process, run by tests/trainer/test_sharded.py under torchrun (gloo):

    PYTHONPATH=. python -m torch.distributed.run --standalone --nproc-per-node 2 tests/trainer/sharded_ranks.py OUT

Every rank builds the same LM and a whole copy of it. The copy takes the step on the global batch at once;
the sharded model on the rank's slice in two accumulated micro-batches, through the trainer's own `wrap`,
`gradient_sync`, gradient clipping and AdamW. Rank 0 writes the differences to OUT (JSON).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

from trainer import distributed
from trainer.fidelity import get_fidelity
from trainer.layers import load_layer_class, route_fla, seed_program
from trainer.model import LM, LMConfig
from trainer.train import make_optimizer

CLIP = 1e-2  # far below the gradient norm: clipping scales every step, so a wrong norm shows


def full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def largest_difference(sharded: dict, whole: dict) -> float:
    return max(float((full(sharded[name]) - whole[name]).abs().max()) for name in whole)


def main(out: Path) -> None:
    here, device = distributed.world(), torch.device("cpu")
    distributed.init(device)
    route_fla(use_kernels=False)
    layer_cls = load_layer_class(seed_program(), name="program")
    config = LMConfig(vocab_size=128, hidden_size=32, num_layers=2, num_heads=2, max_seq_len=16)
    torch.manual_seed(0)
    model = LM(config, layer_cls)
    whole = copy.deepcopy(model)
    step_model = distributed.wrap(model, device, "fsdp")
    fidelity = get_fidelity("smoke", {"grad_clip": CLIP})
    optimizers = make_optimizer(model, fidelity, device), make_optimizer(whole, fidelity, device)

    tokens = torch.randint(0, config.vocab_size, (8, 16), generator=torch.Generator().manual_seed(1))
    loss_whole = whole(tokens, labels=tokens).loss
    loss_whole.backward()
    batches = iter(tokens.split(2))  # drawn as one process draws them: 4 micro-batches of 2
    micro = distributed.local_micro_batches(lambda n: (next(batches),) * 2, 8, 2, here)
    share, loss_sum = sum(len(batch) for batch, _ in micro), 0.0
    for index, (batch, labels) in enumerate(micro):
        with distributed.gradient_sync(step_model, last=index == len(micro) - 1):
            loss = step_model(batch, labels=labels).loss / (share / len(batch))
            loss.backward()
        loss_sum += loss.item()

    grads_whole = {name: p.grad.clone() for name, p in whole.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    norm = full(torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP))
    norm_whole = torch.nn.utils.clip_grad_norm_(whole.parameters(), CLIP)
    clipped = {name: p.grad for name, p in model.named_parameters()}
    clipped_whole = {name: p.grad for name, p in whole.named_parameters()}
    for optimizer in optimizers:
        optimizer.step()
    weights = {name: p.detach() for name, p in model.named_parameters()}
    trained = {name: p.detach() for name, p in whole.named_parameters()}
    figures = {
        "sharded": distributed.strategy_of(step_model) == "fsdp"
        and all(isinstance(p, DTensor) and p.to_local().numel() < p.numel() for p in model.parameters()),
        "tied": model.head.weight is model.embed.weight,
        "loss": distributed.reduce(loss_sum), "loss_whole": loss_whole.item(),
        "grad_difference": largest_difference(grads, grads_whole),
        "grad_largest": max(float(g.abs().max()) for g in grads_whole.values()),
        "norm": norm.item(), "norm_whole": norm_whole.item(),
        "clipped_difference": largest_difference(clipped, clipped_whole),
        "weight_difference": largest_difference(weights, trained),
    }
    gathered = distributed.full_model(model, lambda: LM(config, layer_cls))  # every rank takes part
    if here.main:
        state, state_whole = gathered.state_dict(), whole.state_dict()
        figures["state_keys_match"] = list(state) == list(state_whole)
        figures["state_difference"] = max(float((state[k] - state_whole[k]).abs().max()) for k in state_whole)
        figures["gathered_tied"] = gathered.head.weight is gathered.embed.weight
        out.write_text(json.dumps(figures, indent=1))
    distributed.teardown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
