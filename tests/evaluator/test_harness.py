"""The adapter gives lm-eval's own HF model's numbers on the same model and tokenizer."""

from __future__ import annotations

import random

import pytest
import torch
from lm_eval.api.instance import Instance

from evaluator.evaluate import evaluate_model
from evaluator.harness import DiscoveryLM, TokenizerAdapter

REQUESTS = [
    ("Question: Which technology was developed most recently?\nAnswer:", " cellular telephone"),
    ("Question: Which technology was developed most recently?\nAnswer: ", "television"),  # trailing space moves
    ("", "The code of Anna is 7."),  # empty context: the end-of-text token stands in
    ("tea 4 , sun 7 , map 1 . sun 7 , tea", " 4"),
    ("The river ran slowly past the old mill. " * 12, "Rain fell on the quiet town all night."),  # truncated
    ("x", "A merchant counted coins beside the gate."),
]
PAGES = ["Children played near the edge of the field, and the wind moved the tall grass in long waves. " * 6,
         "A cart rolled over the stones of the bridge.", ""]


def instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


@pytest.fixture(scope="module")
def hflm(tiny_gpt2, hf_tokenizer):
    from lm_eval.models.huggingface import HFLM

    # logits_cache=False: HFLM reuses one request's logits for every request with the same tokens, and
    # on repetitive text two rolling windows can share tokens but not their split into context and
    # continuation; the cached answer is then wrong for one of them (seen with lm-eval 0.4.13).
    return HFLM(pretrained=tiny_gpt2, tokenizer=hf_tokenizer, batch_size=4, max_length=64, logits_cache=False)


@pytest.fixture(scope="module")
def ours(tiny_gpt2, tiny_tokenizer):
    return DiscoveryLM(tiny_gpt2, tiny_tokenizer, eot_token_id=0, max_length=64, batch_size=3, progress=False)


def test_loglikelihoods_match_hflm(hflm, ours):
    expected = hflm.loglikelihood(instances("loglikelihood", REQUESTS), disable_tqdm=True)
    got = ours.loglikelihood(instances("loglikelihood", REQUESTS))
    for (want, want_greedy), (have, have_greedy) in zip(expected, got, strict=True):
        assert have == pytest.approx(want, abs=1e-4)
        assert have_greedy == want_greedy


def test_edge_requests_hflm_rejects(ours):
    empty, blank = ours.loglikelihood(instances("loglikelihood", [("Question:", ""), ("   ", " yes")]))
    assert empty == (0.0, True)  # nothing to score is certain
    assert blank == ours.loglikelihood(instances("loglikelihood", [("", "    yes")]))[0]  # whitespace context = empty


def test_rolling_loglikelihoods_match_hflm(hflm, ours):
    args = [(page,) for page in PAGES]
    expected = hflm.loglikelihood_rolling(instances("loglikelihood_rolling", args), disable_tqdm=True)
    got = ours.loglikelihood_rolling(instances("loglikelihood_rolling", args))
    assert got == pytest.approx(expected, abs=1e-3)
    assert got[2] == 0.0


def test_greedy_generation_matches_hflm(hflm, ours):
    options = {"until": ["\n", "."], "max_gen_toks": 12, "do_sample": False}
    args = [("Question: Which technology", options), ("tea 4 , sun 7 , map", options), ("The code of", options)]
    expected = hflm.generate_until(instances("generate_until", args), disable_tqdm=True)
    assert ours.generate_until(instances("generate_until", args)) == expected


def test_same_accuracy_as_hflm_on_tasks(hflm, ours, bench_cache):
    tasks = ["arc_easy", "recall_mqar"]
    theirs = evaluate_model(hflm, tasks=tasks, limit=25, cache_dir=bench_cache, progress=False)
    mine = evaluate_model(ours, tasks=tasks, limit=25, cache_dir=bench_cache, progress=False)
    for task in tasks:
        assert mine["tasks"][task]["metrics"]["acc"] == theirs["tasks"][task]["metrics"]["acc"]
    assert mine["tasks"]["arc_easy"]["metrics"]["acc_norm"] == theirs["tasks"]["arc_easy"]["metrics"]["acc_norm"]


def test_batching_and_order_do_not_change_scores(tiny_gpt2, tiny_tokenizer):
    requests = REQUESTS * 3
    random.Random(0).shuffle(requests)
    one = DiscoveryLM(tiny_gpt2, tiny_tokenizer, eot_token_id=0, max_length=64, batch_size=1, progress=False)
    many = DiscoveryLM(tiny_gpt2, tiny_tokenizer, eot_token_id=0, max_length=64, batch_size=8, progress=False)
    a = one.loglikelihood(instances("loglikelihood", requests))
    b = many.loglikelihood(instances("loglikelihood", requests))
    assert [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-4)


def test_any_callable_model_and_tokenizer_with_encode_decode():
    """A bare function returning a logits tensor and a character tokenizer are enough."""

    class Characters:
        def encode(self, text):
            return [ord(c) % 128 for c in text]

        def decode(self, ids):
            return "".join(chr(i) for i in ids)

    def always_b(ids: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*ids.shape, 128)
        logits[..., ord("b")] = 10.0
        return logits

    lm = DiscoveryLM(always_b, Characters(), eot_token_id=0, max_length=16, progress=False)
    (score_b, greedy_b), (score_c, greedy_c) = lm.loglikelihood(instances("loglikelihood", [("a", "b"), ("a", "c")]))
    assert greedy_b and not greedy_c and score_b > score_c
    options = {"until": ["bbb"], "max_gen_toks": 10}
    assert lm.generate_until(instances("generate_until", [("a", options)])) == [""]
    assert lm.generate_until(instances("generate_until", [("a", {"until": [], "max_gen_toks": 4})])) == ["bbbb"]


def test_tokenizer_adapter_never_adds_special_tokens(tiny_tokenizer, hf_tokenizer):
    text = "The code of Anna is 7."
    ids = TokenizerAdapter(tiny_tokenizer).encode(text)
    assert ids == TokenizerAdapter(hf_tokenizer).encode(text) == tiny_tokenizer.encode(text).ids
    assert TokenizerAdapter(tiny_tokenizer).decode(ids) == text


def test_nan_logits_are_an_error(tiny_tokenizer):
    def broken(ids):
        return torch.full((*ids.shape, tiny_tokenizer.get_vocab_size()), float("nan"))

    lm = DiscoveryLM(broken, tiny_tokenizer, eot_token_id=0, max_length=16, progress=False)
    with pytest.raises(FloatingPointError):
        lm.loglikelihood(instances("loglikelihood", REQUESTS[:1]))


def test_a_checkpoint_trained_in_bfloat16_is_evaluated_in_it_on_a_cpu(tiny_tokenizer, tmp_path):
    from trainer.checkpoint import save_checkpoint
    from trainer.layers import load_layer_class, seed_program
    from trainer.model import LM, LMConfig

    # As about a third of the published programs do: a hand-made cast that only autocast makes harmless.
    output = '        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))\n'
    program = seed_program().replace(output, output.replace("self.o_proj(rearrange(o,", "self.o_proj(rearrange(o.to(torch.bfloat16),"))
    assert program != seed_program()
    config = LMConfig(vocab_size=tiny_tokenizer.get_vocab_size(), hidden_size=32, num_layers=1, num_heads=2,
                      max_seq_len=64, eos_token_id=0)
    model = LM(config, load_layer_class(program, name="bf16_cast"))
    request = instances("loglikelihood", [("tea 4 , sun 7 , tea", " 4")])
    for trained_in in ("bfloat16", "float32"):
        directory = save_checkpoint(tmp_path / trained_in, model, program, tiny_tokenizer, dtype=trained_in)
        lm = DiscoveryLM.from_checkpoint(directory, progress=False, workdir=str(tmp_path / f"work-{trained_in}"))
        try:
            if trained_in == "bfloat16":  # the sandboxed child runs it under the autocast it trained with
                [(logprob, _)] = lm.loglikelihood(request)
                assert logprob < 0
            else:
                with pytest.raises(RuntimeError, match="BFloat16|dtype"):
                    lm.loglikelihood(request)
        finally:
            lm.close()
