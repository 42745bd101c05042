"""Tiny models, tokenizers, checkpoints and task files shared by the evaluator tests, all built offline."""

from __future__ import annotations

import pytest
import torch

from evaluator import recall, sources

EOS = "<|endoftext|>"


def corpus() -> list[str]:
    """Text with the words, digits and punctuation the benchmarks use, so encodings are not all bytes."""
    texts = [doc["context"] for doc in recall.mqar_docs(50) + recall.kv_docs(50)]
    texts += [f"Question: {doc['question']}\nAnswer: {' '.join(doc['choices']['text'])}"
              for doc in sources.documents("arc_easy")[:200]]
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE `tokenizers.Tokenizer` (what checkpoints store), 400 tokens, end-of-text = 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    assert tokenizer.token_to_id(EOS) == 0
    return tokenizer


@pytest.fixture(scope="session")
def hf_tokenizer(tiny_tokenizer):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer, eos_token=EOS)


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_tokenizer):
    """A randomly initialised two-layer GPT-2 with a short window (64 positions), so truncation is exercised."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=tiny_tokenizer.get_vocab_size(),
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory):
    """A cache folder with every task's files built once for the session."""
    from evaluator.tasks import build_tasks

    cache = tmp_path_factory.mktemp("cache")
    build_tasks(cache)
    return cache


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory, tiny_tokenizer):
    """A real checkpoint of the seed DeltaNet (untrained, tiny), written by the trainer's own code."""
    from trainer import checkpoint
    from trainer.layers import load_layer_class, seed_program
    from trainer.model import LM, LMConfig

    torch.manual_seed(0)
    config = LMConfig(vocab_size=tiny_tokenizer.get_vocab_size(), hidden_size=32, num_layers=1, num_heads=2,
                      max_seq_len=64, eos_token_id=0)
    program = seed_program()
    model = LM(config, load_layer_class(program))
    return checkpoint.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", model, program, tiny_tokenizer,
                                      fidelity="smoke")
