"""What the trusted boundary adds to one candidate's wall time at a fidelity, stage by stage.

    python benchmarks/boundary_cost.py                 # smoke, the seed, 1 training seed, 3 repeats
    python benchmarks/boundary_cost.py --set steps=60 --repeats 5

Trains the seed once in its sandbox, then times, in one process on one machine, each piece the
boundary brought in against what it replaced (repeated, alternating; median and spread):

- the trusted causality check in the engineer's checks (new; nothing before it);
- validation loss: in this process from the loaded model (before) against sealing plus the trusted
  measurement through a fresh sandboxed model server, leak probes included (now);
- benchmarks: the model loaded in the evaluator's process (before) against a sandboxed model server
  that returns logits (now), on the fidelity's benchmark tier.

Prints the seconds of each and the total added per training seed; the pipeline pays the validation
and benchmark parts once per seed, the check once per candidate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from agent.checks.trusted import trusted_leak_check  # noqa: E402
from evaluator.evaluate import evaluate_checkpoint, evaluate_model  # noqa: E402
from evaluator.harness import DiscoveryLM  # noqa: E402
from trainer.checkpoint import load_checkpoint  # noqa: E402
from trainer.fidelity import get_fidelity, parse_overrides  # noqa: E402
from trainer.layers import seed_program  # noqa: E402
from trainer.replicates import sandboxed_training  # noqa: E402
from trainer.train import load_data  # noqa: E402
from trainer.trusted import measure, seal  # noqa: E402


def timed(function) -> float:
    started = time.monotonic()
    function()
    return time.monotonic() - started


def in_process_loss(checkpoint: Path, data, batch: int) -> float:
    model = load_checkpoint(checkpoint).model
    inputs, labels = data.validation()
    losses = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            logits = model(inputs[start:start + batch])
            logits = logits if isinstance(logits, torch.Tensor) else logits.logits
            losses.append(F.cross_entropy(logits.flatten(0, 1), labels[start:start + batch].flatten()).item())
    return sum(losses) / len(losses)


def in_process_benchmarks(checkpoint: Path, tier: str, cache: Path) -> dict:
    loaded = load_checkpoint(checkpoint)
    lm = DiscoveryLM(loaded.model, loaded.tokenizer, eot_token_id=loaded.config["eos_token_id"],
                     max_length=loaded.config["max_seq_len"], progress=False)
    return evaluate_model(lm, tier, cache_dir=cache, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fidelity", default="smoke")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    fidelity = get_fidelity(args.fidelity, {**overrides, "replicates": 1})
    cache = Path(os.environ.get("RUN_DIR", ROOT / "runs" / "default")) / "cache"
    data = load_data(fidelity, cache)
    work = Path(tempfile.mkdtemp(prefix="boundary-cost-"))
    print(f"training the seed at {fidelity.name} ({fidelity.steps} steps) ...", flush=True)
    run = sandboxed_training(seed_program(), fidelity, overrides, seed=0, device="cpu", cache=cache,
                             workdir=work / "seed-0", threads=1)
    if not run.ok:
        print(f"training failed: {run.reason}")
        return 1
    checkpoint = seal(work / "seed-0" / "checkpoint", work / "sealed", seed_program(), fidelity, data, seed=0,
                      device="cpu")
    tier = fidelity.eval_tier
    pieces = {
        "causality check (new)": (None, lambda i: trusted_leak_check(seed_program(), fidelity, workdir=work / f"c{i}")),
        "validation loss": (lambda i: in_process_loss(checkpoint, data, fidelity.micro_batch_size),
                            lambda i: (seal(work / "seed-0" / "checkpoint", work / f"s{i}", seed_program(), fidelity,
                                            data, seed=0, device="cpu"),
                                       measure(checkpoint, fidelity, data, workdir=work / f"m{i}"))),
        f"benchmarks ({tier})": (lambda i: in_process_benchmarks(checkpoint, tier, cache),
                                 lambda i: evaluate_checkpoint(checkpoint, tier, cache_dir=cache, progress=False,
                                                               workdir=work / f"e{i}")),
    }
    added = []
    print(f"{'piece':<26} {'before s':>10} {'now s':>10} {'added s':>10}   (median of {args.repeats})")
    for name, (before, now) in pieces.items():
        times = {"before": [], "now": []}
        for i in range(args.repeats):
            for side, function in (("before", before), ("now", now))[:: 1 if i % 2 == 0 else -1]:
                if function is not None:
                    times[side].append(timed(lambda f=function, i=i: f(i)))
        old = statistics.median(times["before"]) if times["before"] else 0.0
        new = statistics.median(times["now"])
        added.append(new - old)
        print(f"{name:<26} {old:>10.2f} {new:>10.2f} {new - old:>10.2f}   now: {[round(t, 1) for t in times['now']]}",
              flush=True)
    print(f"added per candidate with one training seed: {sum(added):.1f} s "
          f"(training itself: {run.result.get('wall_s', run.wall_s):.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
