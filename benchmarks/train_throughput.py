"""Training throughput: our LM around the seed DeltaNet against fla's DeltaNetForCausalLM, and N trainers on one GPU.

    python benchmarks/train_throughput.py                         # CUDA: explore config; CPU: small, ours only
    python benchmarks/train_throughput.py --config small --steps 30 --batch 16 --seq-len 512 --json
    python benchmarks/train_throughput.py --processes 1 2 4       # aggregate of concurrent trainers

Both models get the same shape (hidden size, layers, heads, vocabulary, sequence length, batch), the
same optimiser (AdamW, fused on CUDA) and bfloat16 autocast on CUDA (float32 on a CPU), random
tokens, and the same number of timed steps after warm-up steps that are not counted. Prints tokens/s
of each and the ratio ours / fla. Then N processes (spawned, one model each) train at once on the
same device; their timed windows start together (a barrier) and the aggregate is the sum of their
tokens/s. fla's reference needs CUDA (its kernels are Triton); on a CPU only ours runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

CONFIGS = {
    # The exploration fidelity's model (trainer.fidelity.FIDELITIES["explore"]), one micro-batch per step.
    "explore": {"hidden_size": 256, "num_layers": 8, "num_heads": 8, "vocab_size": 32000, "seq_len": 2048,
                "batch": 16},
    # The smoke fidelity's model.
    "small": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "vocab_size": 2048, "seq_len": 128, "batch": 16},
}


def build_ours(shape: dict, device: torch.device, compile: bool = False):
    from trainer.layers import load_layer_class, route_fla, seed_program
    from trainer.model import LM, LMConfig

    route_fla(use_kernels=None if device.type == "cuda" else False)
    layer_cls = load_layer_class(seed_program(), name="bench_seed", compile=compile)
    config = LMConfig(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                      num_layers=shape["num_layers"], num_heads=shape["num_heads"], max_seq_len=shape["seq_len"])
    model = LM(config, layer_cls).to(device)
    step_model = torch.compile(model) if compile else model
    return model, lambda batch: step_model(batch, labels=batch).loss


def build_fla(shape: dict, device: torch.device):
    """fla's own DeltaNet LM at the same shape, configured like the seed (gate, short convs, L2 q/k, beta)."""
    from fla.models import DeltaNetConfig, DeltaNetForCausalLM

    config = DeltaNetConfig(hidden_size=shape["hidden_size"], num_hidden_layers=shape["num_layers"],
                            num_heads=shape["num_heads"], vocab_size=shape["vocab_size"],
                            max_position_embeddings=shape["seq_len"], use_gate=True, use_short_conv=True,
                            conv_size=4, use_beta=True, qk_norm="l2", qk_activation="silu", hidden_ratio=4,
                            tie_word_embeddings=True, norm_eps=1e-5)
    model = DeltaNetForCausalLM(config).to(device)
    return model, lambda batch: model(input_ids=batch, labels=batch).loss


def time_training(model, loss_fn, shape: dict, device: torch.device, steps: int, warmup: int,
                  barrier=None) -> dict:
    """Warm-up steps (not counted), then `steps` timed optimiser steps on random tokens."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=device.type == "cuda")
    generator = torch.Generator(device=device).manual_seed(0)
    batch = torch.randint(0, shape["vocab_size"], (shape["batch"], shape["seq_len"]), device=device,
                          generator=generator)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            loss = loss_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        loss = step()
    sync(device)
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    elapsed = time.perf_counter() - started
    tokens = steps * shape["batch"] * shape["seq_len"]
    return {"tokens_per_s": tokens / elapsed, "step_ms": 1000 * elapsed / steps, "tokens": tokens,
            "seconds": elapsed, "final_loss": float(loss.detach()), "params": sum(p.numel() for p in model.parameters()),
            "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _worker(shape, device_name, steps, warmup, compile, threads, barrier, queue) -> None:
    try:
        if threads:
            torch.set_num_threads(threads)
        device = torch.device(device_name)
        model, loss_fn = build_ours(shape, device, compile)
        queue.put(time_training(model, loss_fn, shape, device, steps, warmup, barrier))
    except Exception as exc:  # reported by the parent
        barrier.abort()
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def concurrent(n: int, shape: dict, device: torch.device, steps: int, warmup: int, compile: bool) -> dict:
    """n spawned processes, each training its own copy of our model for `steps` timed steps at once."""
    context = mp.get_context("spawn")
    barrier, queue = context.Barrier(n), context.Queue()
    threads = max(1, (os.cpu_count() or 1) // n) if device.type == "cpu" else 0
    processes = [context.Process(target=_worker, args=(shape, str(device), steps, warmup, compile, threads,
                                                       barrier, queue)) for _ in range(n)]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"processes": n, "error": errors[0]}
    return {"processes": n, "tokens_per_s": sum(r["tokens_per_s"] for r in results),
            "per_process": [round(r["tokens_per_s"]) for r in results],
            "peak_memory_mb": [r["peak_memory_mb"] for r in results]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default=None,
                        help="model shape (default: explore on CUDA, small on a CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 1 on a CPU)")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default: the config's)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the config's)")
    parser.add_argument("--processes", type=int, nargs="*", default=None,
                        help="concurrent trainer counts (default 1 2 4 on CUDA, none on a CPU)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (as the explore fidelity)")
    parser.add_argument("--no-fla", action="store_true", help="skip fla's reference model")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    shape = dict(CONFIGS[args.config or ("explore" if cuda else "small")])
    shape.update({k: v for k, v in (("batch", args.batch), ("seq_len", args.seq_len)) if v})
    steps = args.steps or (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    counts = args.processes if args.processes is not None else ([1, 2, 4] if cuda else [])
    report = {"device": torch.cuda.get_device_name(device) if cuda else "cpu",
              "config": args.config or ("explore" if cuda else "small"),
              "shape": shape, "steps": steps, "warmup": warmup, "precision": "bfloat16 autocast" if cuda else "float32",
              "torch": torch.__version__}
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    say(f"{report['device']}: hidden {shape['hidden_size']}, {shape['num_layers']} layers, {shape['num_heads']} "
        f"heads, vocab {shape['vocab_size']}, {shape['batch']} x {shape['seq_len']} tokens per step, "
        f"{warmup} warm-up + {steps} timed steps, {report['precision']}")

    model, loss_fn = build_ours(shape, device, args.compile)
    report["ours"] = time_training(model, loss_fn, shape, device, steps, warmup)
    say(f"ours (trainer.model.LM + seed): {report['ours']['tokens_per_s']:>12,.0f} tokens/s "
        f"({report['ours']['step_ms']:.1f} ms/step, {report['ours']['params']:,} parameters)")
    del model, loss_fn
    if cuda:
        torch.cuda.empty_cache()

    if args.no_fla:
        report["fla"] = {"skipped": "--no-fla"}
    elif not cuda:
        report["fla"] = {"skipped": "fla's DeltaNetForCausalLM needs CUDA (its kernels are Triton)"}
    else:
        try:
            reference, reference_loss = build_fla(shape, device)
        except Exception as exc:
            report["fla"] = {"error": f"could not build fla's DeltaNetForCausalLM: {type(exc).__name__}: {exc}"}
        else:
            try:
                report["fla"] = time_training(reference, reference_loss, shape, device, steps, warmup)
            except Exception as exc:
                report["fla"] = {"error": f"fla's DeltaNetForCausalLM failed to train: {type(exc).__name__}: {exc}"}
            del reference, reference_loss
            torch.cuda.empty_cache()
    if "tokens_per_s" in report["fla"]:
        report["ratio"] = report["ours"]["tokens_per_s"] / report["fla"]["tokens_per_s"]
        say(f"fla (DeltaNetForCausalLM):      {report['fla']['tokens_per_s']:>12,.0f} tokens/s "
            f"({report['fla']['step_ms']:.1f} ms/step, {report['fla']['params']:,} parameters)")
        say(f"ratio ours / fla: {report['ratio']:.2f}")
    else:
        say(f"fla: {report['fla'].get('skipped') or report['fla'].get('error')}")

    report["concurrent"] = []
    for n in counts:
        outcome = concurrent(n, shape, device, steps, warmup, args.compile)
        report["concurrent"].append(outcome)
        if "error" in outcome:
            say(f"{n} concurrent trainers: failed: {outcome['error']}")
        else:
            say(f"{n} concurrent trainers: {outcome['tokens_per_s']:>12,.0f} tokens/s in all "
                f"(per process {outcome['per_process']})")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
