"""One candidate on 1 process, then on N under torchrun (DDP), each sandboxed as a worker trains it.

    python benchmarks/ddp_scaling.py                                  # CPU, gloo: 1 vs 2 processes, smoke model
    python benchmarks/ddp_scaling.py --device cuda --nproc 2 --set steps=100   # NCCL: 1 vs 2 GPUs

Both runs train the seed program with the same seed and the same global batch, so their losses should agree
(tests/trainer/test_ddp.py states the tolerance). Prints, per run: final training loss, validation loss as
the run reports it, the sandbox's wall time (start-up included), the training loop's time per step, and
the ratios of the N-process run to the single one, measured in this one invocation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.fidelity import get_fidelity, parse_overrides  # noqa: E402
from trainer.layers import seed_program  # noqa: E402
from trainer.replicates import sandboxed_training  # noqa: E402
from trainer.train import load_data  # noqa: E402

# The smoke model on the standard library's source (local, no download), shrunk to a short run.
DEFAULTS = {"dataset": "python-stdlib", "steps": "40", "eval_every": "0", "log_every": "5"}


def run(nproc: int, overrides: dict, device: str, cache: Path, scratch: Path, threads: int) -> dict:
    settings = {**overrides, "nproc": str(nproc)}
    fidelity = get_fidelity("smoke", settings)
    started = time.monotonic()
    sandbox = sandboxed_training(seed_program(), fidelity, settings, seed=0, device=device, cache=cache,
                                 workdir=scratch / f"nproc-{nproc}", threads=threads)
    result = sandbox.result or {}
    if not sandbox.ok or result.get("status") != "ok":
        raise SystemExit(f"nproc={nproc} failed: {result.get('reason') or sandbox.reason}\n{sandbox.stderr_tail}")
    return {"nproc": nproc, "loss": result["loss_curve"][-1][1], "val_loss": result["val_loss"],
            "wall_s": time.monotonic() - started, "step_s": result["train_s"] / result["steps_done"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="cores the whole run may use (CPU)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override smoke's fields")
    args = parser.parse_args()
    overrides = {**DEFAULTS, **parse_overrides(args.set)}
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as scratch:
        cache = Path(scratch) / "cache"
        load_data(get_fidelity("smoke", overrides), cache)  # tokenise once, outside the sandbox
        rows = [run(n, overrides, args.device, cache, Path(scratch), args.threads) for n in (1, args.nproc)]
    print(f"{'nproc':>5} {'final loss':>11} {'val loss':>9} {'wall s':>7} {'s/step':>7}")
    for r in rows:
        print(f"{r['nproc']:>5} {r['loss']:>11.6f} {r['val_loss']:>9.6f} {r['wall_s']:>7.1f} {r['step_s']:>7.3f}")
    one, many = rows
    print(f"loss difference {abs(many['loss'] - one['loss']):.2e}; wall ratio {many['wall_s'] / one['wall_s']:.2f}; "
          f"step-time ratio {many['step_s'] / one['step_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
