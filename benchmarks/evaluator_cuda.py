"""The lm-eval adapter on a GPU, checked against the CPU and timed.

    python benchmarks/evaluator_cuda.py [--checkpoint DIR] [--requests 300] [--out FILE]

Without --checkpoint a small untrained seed-DeltaNet checkpoint is written first (the trainer's own
code, a tokenizer trained on the recall documents). The recall tasks' multiple-choice requests, a few
rolling-perplexity pages and some greedy generations run once on the CPU (float32) and once on CUDA
(bfloat16 autocast, as training runs there); the report gives the largest loglikelihood difference,
how often both pick the same choice, whether generations agree, and the time each device took.
Needs only torch, lm-eval's model API and the trainer: no benchmark data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def small_checkpoint(directory: Path) -> Path:
    from evaluator import recall
    from trainer.checkpoint import save_checkpoint
    from trainer.data import EOS, train_tokenizer
    from trainer.layers import load_layer_class, seed_program
    from trainer.model import LM, LMConfig

    texts = [doc["context"] for doc in recall.mqar_docs(300) + recall.kv_docs(300)]
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    torch.manual_seed(0)
    config = LMConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=128, num_layers=2, num_heads=2,
                      max_seq_len=256, eos_token_id=tokenizer.token_to_id(EOS))
    program = seed_program()
    return save_checkpoint(directory, LM(config, load_layer_class(program)), program, tokenizer, fidelity="smoke")


def requests(count: int):
    from lm_eval.api.instance import Instance

    from evaluator import recall

    docs = recall.mqar_docs(count // 2) + recall.kv_docs(count - count // 2)
    choice = [Instance("loglikelihood", {}, (doc["context"], c), i) for i, doc in enumerate(docs) for c in doc["choices"]]
    pages = [Instance("loglikelihood_rolling", {}, (" ".join(recall.FILLER * 40),), i) for i in range(4)]
    options = {"until": ["."], "max_gen_toks": 16}
    prompts = [Instance("generate_until", {}, (doc["context"], options), i) for i, doc in enumerate(docs[:16])]
    return docs, choice, pages, prompts


def run(lm, choice, pages, prompts) -> dict:
    timings, started = {}, time.perf_counter()
    scores = [s for s, _ in lm.loglikelihood(choice)]
    timings["loglikelihood_s"] = time.perf_counter() - started
    started = time.perf_counter()
    rolling = lm.loglikelihood_rolling(pages)
    timings["rolling_s"] = time.perf_counter() - started
    started = time.perf_counter()
    generated = lm.generate_until(prompts)
    timings["generate_s"] = time.perf_counter() - started
    return {"scores": scores, "rolling": rolling, "generated": generated, **timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--requests", type=int, default=300, help="recall documents (each gives several requests)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    from trainer.layers import route_fla

    try:
        route_fla(use_kernels=True)
    except ImportError:
        route_fla(use_kernels=False)  # fla is not installed here: its CPU stand-ins run on CUDA too
    from evaluator.harness import DiscoveryLM

    checkpoint = Path(args.checkpoint) if args.checkpoint else small_checkpoint(Path(tempfile.mkdtemp()) / "ckpt")
    docs, choice, pages, prompts = requests(args.requests)
    results = {}
    for device in ("cpu", "cuda"):
        lm = DiscoveryLM.from_checkpoint(checkpoint, device=device, batch_size=32, progress=False)
        run(lm, choice[:8], pages[:1], prompts[:2])  # warm-up (CUDA context, kernels)
        results[device] = run(lm, choice, pages, prompts)
    cpu, cuda = results["cpu"], results["cuda"]
    picks = {}
    for device, result in results.items():
        at, chosen = 0, []
        for doc in docs:
            n = len(doc["choices"])
            row = result["scores"][at:at + n]
            chosen.append(max(range(n), key=row.__getitem__))
            at += n
        picks[device] = chosen
    report = {
        "device": torch.cuda.get_device_name(0),
        "requests": len(choice),
        "max_abs_loglikelihood_diff": max(abs(a - b) for a, b in zip(cpu["scores"], cuda["scores"], strict=True)),
        "max_rel_rolling_diff": max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(cpu["rolling"], cuda["rolling"],
                                                                                  strict=True)),
        "same_choice": sum(a == b for a, b in zip(picks["cpu"], picks["cuda"], strict=True)) / len(docs),
        "same_generation": sum(a == b for a, b in zip(cpu["generated"], cuda["generated"], strict=True)) / len(prompts),
        "seconds": {device: {k: round(v, 3) for k, v in r.items() if k.endswith("_s")} for device, r in results.items()},
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
