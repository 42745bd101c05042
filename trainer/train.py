"""Train a small language model around a layer program and report honest numbers.

    python -m trainer.train --program trainer/programs/seed_deltanet.py --fidelity smoke --out runs/try
    python -m trainer.train ... --nproc 2       # DDP under torchrun, same global batch (trainer.distributed)
    python -m trainer.train ... --nproc 2 --set parallel=fsdp     # the same with sharded weights (trainer.sharded)

Writes OUT/result.json (status, loss curve, validation loss, tokens/s, memory, parameters, times)
and OUT/checkpoint/ for the evaluator. Stops early, with the reason, on a NaN loss or divergence.
Same seed, same data order and initialisation: on a CPU the loss curve repeats exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

from trainer import distributed
from trainer.checkpoint import save_checkpoint
from trainer.cli import Parser, device_name, existing_file, fidelity_name, guard, key_value
from trainer.data import (
    TokenData,
    data_directory,
    default_cache_dir,
    is_local,
    prepare,
    random_windows,
    validation_windows,
)
from trainer.fidelity import Fidelity, get_fidelity, parse_overrides
from trainer.gpu_share import limit_gpu_memory
from trainer.layers import load_layer_class, route_fla
from trainer.model import LM, LMConfig
from trainer.synthetic import SyntheticTasks, task_accuracies

SYNTHETIC = "synthetic"  # the dataset name of generated tasks (trainer.synthetic)


def load_data(fidelity: Fidelity, cache_dir: Path):
    """The fidelity's training data: a tokenised corpus (prepared once into CACHE_DIR) or generated tasks."""
    if fidelity.dataset == SYNTHETIC:
        return SyntheticTasks(fidelity.seq_len, eval_sequences=fidelity.eval_batches * fidelity.micro_batch_size)
    local = is_local(fidelity.dataset)
    directory = data_directory(cache_dir, fidelity.dataset, fidelity.vocab_size)
    if not local and not (directory / "meta.json").exists():
        raise FileNotFoundError(
            f"dataset {fidelity.dataset!r} is not prepared in {cache_dir}; tokenise it once with:\n"
            f"  python -m trainer.data prepare --dataset {fidelity.dataset} --vocab-size {fidelity.vocab_size} "
            f"--cache {cache_dir}")
    return TextBatches(prepare(fidelity.dataset, fidelity.vocab_size, cache_dir, progress=False), fidelity)


class TextBatches:
    """Random windows of a tokenised corpus for training, fixed ones for validation; every token is a label."""

    def __init__(self, data: TokenData, fidelity: Fidelity):
        self.data, self.fidelity = data, fidelity
        self.tokenizer, self.eos_token_id = data.tokenizer, data.eos_token_id
        self.vocab_size = data.meta["vocab_size"]

    def train_batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch = random_windows(self.data.train, self.fidelity.seq_len, size, generator)
        return batch, batch

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        fid = self.fidelity
        windows = validation_windows(self.data.val, fid.seq_len, fid.eval_batches * fid.micro_batch_size)
        return windows, windows


def lr_at(step: int, fidelity: Fidelity) -> float:
    """Warmup-stable-decay: linear warmup, constant, then linear decay over the last fraction."""
    if step < fidelity.warmup_steps:
        return fidelity.lr * (step + 1) / fidelity.warmup_steps
    decay_start = int(fidelity.steps * (1 - fidelity.decay_fraction))
    if step < decay_start:
        return fidelity.lr
    progress = (step - decay_start) / max(1, fidelity.steps - decay_start)
    return fidelity.lr * (1 - (1 - fidelity.min_lr_ratio) * progress)


def make_optimizer(model: torch.nn.Module, fidelity: Fidelity, device: torch.device) -> torch.optim.Optimizer:
    # No weight decay on gains, biases and embeddings.
    embedding = {id(model.embed.weight)}
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2 and id(p) not in embedding]
    rest = [p for p in model.parameters() if p.requires_grad and (p.ndim < 2 or id(p) in embedding)]
    groups = [{"params": decay, "weight_decay": fidelity.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=fidelity.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in kB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class Trainer:
    def __init__(self, program: str, fidelity: Fidelity, *, seed: int = 0, device: str | None = None,
                 cache_dir: Path | None = None, progress: bool = True, compile: bool | None = None):
        self.program, self.fidelity, self.seed, self.progress = program, fidelity, seed, progress
        self.world = distributed.world()
        requested = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.device = distributed.device_for(requested, self.world)
        limit_gpu_memory(self.device)  # this worker's share of a GPU shared by several (trainer.gpu_share)
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.compile = fidelity.compile if compile is None else compile
        # "bfloat16" autocasts on any device (a CPU too, as the engineer's checks do); "auto" only on CUDA.
        self.autocast = fidelity.dtype == "bfloat16" or (self.device.type == "cuda" and fidelity.dtype == "auto")

    def _context(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    @torch.no_grad()
    def validation_loss(self, model: LM, validation: tuple[torch.Tensor, torch.Tensor]) -> float:
        """Mean loss per labelled token over the validation set."""
        model.eval()
        inputs, labels = validation
        total, count = 0.0, 0
        for start in range(0, len(inputs), self.fidelity.micro_batch_size):
            batch = inputs[start:start + self.fidelity.micro_batch_size].to(self.device)
            targets = labels[start:start + self.fidelity.micro_batch_size].to(self.device)
            labelled = int((targets[:, 1:] != -100).sum())
            with self._context():
                total += model(batch, labels=targets).loss.item() * labelled
            count += labelled
        model.train()
        return total / max(count, 1)

    @torch.no_grad()
    def logits(self, model: LM, inputs: torch.Tensor) -> torch.Tensor:
        model.eval()
        out = []
        for start in range(0, len(inputs), self.fidelity.micro_batch_size):
            with self._context():
                out.append(model(inputs[start:start + self.fidelity.micro_batch_size].to(self.device)).logits.float())
        model.train()
        return torch.cat(out).cpu()

    def run(self) -> dict:
        fid = self.fidelity
        started, cpu_started = time.monotonic(), time.process_time()
        distributed.init(self.device)
        torch.manual_seed(self.seed)
        data = load_data(fid, self.cache_dir)
        # fla kernels only serve CUDA tensors; a CPU run uses the stand-ins even on a GPU machine.
        backend = route_fla(use_kernels=None if self.device.type == "cuda" else False)
        layer_cls = load_layer_class(self.program, name="program", compile=self.compile and self.device.type == "cuda")
        config = LMConfig.from_fidelity(fid, eos_token_id=data.eos_token_id)
        config.vocab_size = data.vocab_size
        torch.manual_seed(self.seed)
        model = LM(config, layer_cls).to(self.device)
        counts = model.parameter_counts()
        # Every rank starts from the same weights (same seed); DDP checks that, then averages gradients.
        # FSDP shards `model` in place (its parameters become DTensors): the optimiser is built after this.
        step_model = distributed.wrap(model, self.device, fid.parallel)
        step_model = torch.compile(step_model) if self.compile and self.device.type == "cuda" else step_model
        optimizer = make_optimizer(model, fid, self.device)
        generator = torch.Generator().manual_seed(self.seed)
        val_windows = data.validation()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        result = {"status": "ok", "reason": None, "seed": self.seed, "device": str(self.device), "backend": backend,
                  "fidelity": fid.to_dict(), "parallel": distributed.strategy_of(step_model), **counts,
                  "loss_curve": [], "val_curve": []}
        # Every rank validates (under FSDP through the sharded model, whose forward gathers the weights).
        val_start = self.validation_loss(model, val_windows)
        result["val_loss_start"] = val_start
        result["val_curve"].append([0, val_start])
        first_loss, train_time, tokens = None, 0.0, 0
        from trainer.progress import progress

        bar = progress(range(fid.steps), desc="training", unit="step", disable=not self.progress, file=sys.stderr,
                   mininterval=1.0)
        step = 0
        for step in bar:
            tick = time.monotonic()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, fid)
            loss_sum = 0.0
            # This process's share of the global batch, drawn as a single process draws it (trainer.distributed).
            micro_batches = distributed.local_micro_batches(lambda n: data.train_batch(n, generator),
                                                            fid.batch_size, fid.micro_batch_size, self.world)
            share = sum(len(batch) for batch, _ in micro_batches)
            for index, (batch, labels) in enumerate(micro_batches):
                with distributed.gradient_sync(step_model, last=index == len(micro_batches) - 1):
                    with self._context():
                        loss = step_model(batch.to(self.device), labels=labels.to(self.device)).loss
                    loss = loss / (share / len(batch))
                    loss.backward()
                loss_sum += loss.item()
            # The global batch's loss: every rank sees the same value, so all stop (NaN, divergence) together.
            loss_sum = distributed.reduce(loss_sum)
            # Under FSDP the gradients are DTensor shards: the norm is reduced over the ranks, the global one.
            torch.nn.utils.clip_grad_norm_(model.parameters(), fid.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            train_time += time.monotonic() - tick
            tokens += fid.batch_size * fid.seq_len
            first_loss = loss_sum if first_loss is None else first_loss
            if step % fid.log_every == 0 or step == fid.steps - 1:
                result["loss_curve"].append([step, loss_sum])
                bar.set_postfix(loss=f"{loss_sum:.3f}")
            if not math.isfinite(loss_sum):
                result.update(status="failed", reason=f"the training loss became {loss_sum} at step {step}")
                break
            if step > fid.warmup_steps and loss_sum > fid.divergence_ratio * first_loss:
                result.update(status="failed", reason=f"diverged at step {step}: loss {loss_sum:.3f} is more than "
                                                      f"{fid.divergence_ratio}x the first loss {first_loss:.3f}")
                break
            if fid.eval_every and step and step % fid.eval_every == 0 and step != fid.steps - 1:
                result["val_curve"].append([step, self.validation_loss(model, val_windows)])
        bar.close()

        if result["status"] == "ok":
            val_loss = self.validation_loss(model, val_windows)
            result["val_curve"].append([step + 1, val_loss])
            if not math.isfinite(val_loss):
                result.update(status="failed", reason=f"the validation loss is {val_loss}")
            result["val_loss"] = val_loss
            if isinstance(data, SyntheticTasks):
                result.update(task_accuracies(data, lambda inputs: self.logits(model, inputs)))
        else:
            result["val_loss"] = None
        wall = time.monotonic() - started
        # Costs add up over the ranks; memory is the largest one process needed.
        gpus = self.world.size if self.device.type == "cuda" else 0
        result.update(threads=torch.get_num_threads(), steps_done=step + 1, tokens=tokens, tokens_per_s=tokens / max(train_time, 1e-9),
                      train_s=train_time, wall_s=wall, cpu_s=distributed.reduce(time.process_time() - cpu_started, "sum"),
                      gpu_s=wall * gpus, peak_memory_mb=distributed.reduce(peak_memory_mb(self.device), "max"),
                      world_size=self.world.size)
        # The weights rank 0 saves: a sharded model is gathered whole (a collective, on every rank).
        self.model = distributed.full_model(model, lambda: LM(config, layer_cls))
        self.tokenizer = data.tokenizer
        return result


def train(program: str, fidelity: Fidelity, out: Path, **options) -> dict:
    """Train, write OUT/result.json and (when the run is healthy) OUT/checkpoint/; return the result.
    Under torchrun every rank trains and only rank 0 writes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(program, fidelity, **options)
    try:
        result = trainer.run()
        if result["status"] == "ok" and trainer.world.main:
            # The precision it trained in: the evaluator runs the model in the same one.
            save_checkpoint(out / "checkpoint", trainer.model, program, trainer.tokenizer, fidelity=fidelity.name,
                            seed=trainer.seed, dtype="bfloat16" if trainer.autocast else "float32")
            result["checkpoint"] = str((out / "checkpoint").resolve())
    except Exception as exc:
        result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()[-4000:]}
    finally:
        distributed.teardown()
    if not trainer.world.main:
        # torchrun reports a failing rank's exit status; its traceback goes to stderr with the others'.
        if result["status"] == "error":
            print(result["traceback"], file=sys.stderr)
        return result
    tmp = out / ".result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out / "result.json")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--program", required=True, type=existing_file,
                        help="layer program file (see the layer contract)")
    parser.add_argument("--fidelity", default="smoke", type=fidelity_name)
    parser.add_argument("--set", nargs="*", default=[], type=key_value, metavar="KEY=VALUE",
                        help="override fidelity fields")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, type=device_name,
                        help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--cache", default=None, help="data cache directory (default RUN_DIR/cache)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--nproc", type=int, default=None,
                        help="processes training together under torchrun with DDP (default: the fidelity's nproc)")
    args = parser.parse_args(argv)
    try:
        fidelity = get_fidelity(args.fidelity, parse_overrides(args.set))
    except ValueError as err:  # an unknown field or a bad value in --set
        parser.error(f"--set: {err}")
    if args.nproc is not None and args.nproc < 0:
        parser.error(f"--nproc: must be 0 (every visible GPU) or more, got {args.nproc}")
    nproc = distributed.resolve_nproc(fidelity.nproc if args.nproc is None else args.nproc, args.device)
    if nproc > 1 and not distributed.under_torchrun():
        # The ranks run this same command line; under torchrun they train instead of launching again.
        return distributed.relaunch(nproc, sys.argv[1:] if argv is None else argv, args.device)
    program = args.program.read_text()
    result = train(program, fidelity, Path(args.out), seed=args.seed, device=args.device, cache_dir=args.cache,
                   progress=not args.no_progress, compile=args.compile)
    summary = {k: result.get(k) for k in ("status", "reason", "val_loss_start", "val_loss", "tokens_per_s", "params",
                                          "non_embedding_params", "wall_s", "checkpoint")}
    if distributed.world().main:
        print(json.dumps(summary, indent=1))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(guard(main))
