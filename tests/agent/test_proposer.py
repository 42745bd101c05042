"""The offline proposer writes valid, reproducible programs; its default genome is the seed."""

from dataclasses import replace

import pytest
import torch

from agent.proposer import MOTIFS, Genome, mutate, parse_genome, render
from trainer.layers import load_layer_class, seed_program


def build(program: str, name: str):
    return load_layer_class(program, name=name)(hidden_size=32, num_heads=2, layer_idx=0)


def test_the_default_genome_is_the_seed_layer():
    torch.manual_seed(0)
    seed, default = build(seed_program(), "seed"), build(render(Genome()), "default")
    default.load_state_dict(seed.state_dict())  # same parameter names and shapes
    x = torch.randn(2, 19, 32)
    torch.testing.assert_close(default(x)[0], seed(x)[0])


@pytest.mark.parametrize("motif", sorted(MOTIFS))
def test_every_motif_value_renders_a_working_causal_layer(motif):
    for value in MOTIFS[motif]:
        genome = replace(Genome(), **{motif: value})
        program = render(genome)
        assert parse_genome(program) == genome
        layer = build(program, f"{motif}_{value}".replace(".", "_"))
        x = torch.randn(2, 23, 32, requires_grad=True)
        out = layer(x)[0]
        out.sum().backward()
        assert out.shape == x.shape and torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        # Causal: changing the last token leaves every earlier output unchanged.
        y = x.detach().clone()
        y[:, -1] += 1.0
        torch.testing.assert_close(layer(y)[0][:, :-1], out[:, :-1].detach())


def test_mutation_is_reproducible_and_changes_the_parent():
    first = mutate(seed_program(), seed=7, parent_name="seed")
    again = mutate(seed_program(), seed=7, parent_name="seed")
    other = mutate(seed_program(), seed=8, parent_name="seed")
    assert first.program == again.program and first.name == again.name
    assert first.genome != Genome() and (other.genome != first.genome or other.name != first.name)
    assert "seed" in first.motivation and first.changes
    # A child of a proposer program starts from its genome.
    grandchild = mutate(first.program, seed=1)
    differing = {m for m in MOTIFS if getattr(grandchild.genome, m) != getattr(first.genome, m)}
    assert 1 <= len(differing) <= 2


def test_avoid_skips_genomes_already_tried():
    from agent.proposer import genome_key

    first = mutate(seed_program(), seed=3)
    second = mutate(seed_program(), seed=3, avoid={genome_key(first.genome)})
    assert second.genome != first.genome
