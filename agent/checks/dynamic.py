"""Dynamic checks of a layer class: run it and test the properties training relies on.

    report = run_checks(layer_cls, ProbeConfig.from_fidelity(fidelity))

Every check runs the layer on the CPU, seeded, in float32 or, for fidelities that train in bfloat16,
under bfloat16 autocast as training does; each yields `{name, ok, hard, detail, ...}`:

    forward        forward and backward for several batch sizes and lengths (odd ones too); the output
                   honours the contract (o[B, T, D], attentions, cache)
    finite         outputs and every gradient are finite
    gradients      every trainable parameter receives a gradient (a warning when some do not)
    params         parameters per layer within the fidelity's budget
    causality      changing tokens after t leaves outputs up to t unchanged, for several t (chunk
                   boundaries and positions inside a chunk)
    batch          a sample's output is the same alone and inside a batch
    lm_step        one training step of the LM shell with two blocks (layer_idx 0 and 1) has a finite loss
    cost_growth    forward time at doubling lengths; an exponent near 2 means quadratic cost. Timing is
                   noisy on a shared CPU, so this one flags (hard=False) rather than rejects

These run in the sandboxed child (`agent.checks.probe`); nothing here is safe to call on untrusted
code in the parent process.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn

# Relative change of earlier outputs that counts as a leak; float32 rounding stays far below it.
RTOL = 1e-4
# Under bfloat16 (8 bits of mantissa) a batched and a single matmul may round differently.
BF16_RTOL = 1e-2
DETAIL_CHARS = 2000


@dataclass
class ProbeConfig:
    hidden_size: int = 64
    num_heads: int = 2
    max_layer_params: int = 100_000
    norm_eps: float = 1e-5
    layer_kwargs: dict = field(default_factory=dict)
    # The LM shell of the lm_step check.
    vocab_size: int = 2048
    lm_layers: int = 2
    mlp_ratio: float = 4.0
    tie_embeddings: bool = True
    batch_sizes: tuple[int, ...] = (1, 3)
    lengths: tuple[int, ...] = (17, 64, 200)
    # Positions after which the input changes: 63/64 straddle a 64-token chunk boundary, 37 and 130 do not.
    causal_length: int = 200
    causal_points: tuple[int, ...] = (0, 37, 63, 64, 130)
    batch_length: int = 64
    # Cost growth is timed on a small layer, so that even the verify fidelity's width stays cheap on a CPU.
    cost_lengths: tuple[int, ...] = (512, 1024, 2048)
    cost_hidden_size: int = 64
    cost_repeats: int = 5
    # log2 of the time ratio per doubling above which the cost is flagged: 1.6 is a ratio of about 3.
    quadratic_exponent: float = 1.6
    rtol: float = RTOL
    # None (float32) or "bfloat16": the autocast precision the fidelity trains in.
    autocast: str | None = None
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_fidelity(cls, fidelity, **overrides) -> ProbeConfig:
        # "auto" is float32 where the checks run (a CPU), so only an explicit bfloat16 fidelity autocasts.
        settings = {"autocast": "bfloat16" if fidelity.dtype == "bfloat16" else None, **overrides}
        return cls(hidden_size=fidelity.hidden_size, num_heads=fidelity.num_heads,
                   max_layer_params=fidelity.max_layer_params, vocab_size=fidelity.vocab_size,
                   mlp_ratio=fidelity.mlp_ratio, tie_embeddings=fidelity.tie_embeddings, **settings)

    @classmethod
    def from_dict(cls, data: dict) -> ProbeConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown probe settings {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def tolerance(self) -> float:
        return max(self.rtol, BF16_RTOL) if self.autocast else self.rtol

    def precision(self):
        """The context the layer runs in: bfloat16 autocast as in training, or plain float32."""
        if self.autocast is None:
            return nullcontext()
        return torch.autocast("cpu", dtype=getattr(torch, self.autocast))

    @property
    def cost_heads(self) -> int:
        """Heads of the small timing layer, keeping the head width of the real one where possible."""
        if self.cost_hidden_size >= self.hidden_size:
            return self.num_heads
        head_dim = self.hidden_size // self.num_heads
        return max(1, self.cost_hidden_size // head_dim)


def check(name: str, ok: bool | None, detail: str, *, hard: bool = True, **extra) -> dict:
    return {"name": name, "ok": ok, "hard": hard, "detail": detail[:DETAIL_CHARS], **extra}


def describe_error(exc: BaseException) -> str:
    """The exception and the frames that matter: the program's own, and the one where it surfaced.

    Programs are executed from strings, so their frames have filenames like `<program>`.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename.startswith("<")][-6:]
    if frames and (not mine or frames[-1] is not mine[-1]):
        mine.append(frames[-1])
    where = "".join(traceback.format_list(mine))
    return f"{type(exc).__name__}: {exc}\n{where}".strip()[:DETAIL_CHARS]


def build_layer(layer_cls: type[nn.Module], config: ProbeConfig, hidden_size: int | None = None,
                num_heads: int | None = None, layer_idx: int = 0) -> nn.Module:
    """Construct the layer exactly as the LM shell does (trainer.model.Block), seeded, in float32."""
    torch.manual_seed(config.seed)
    layer = layer_cls(hidden_size=hidden_size or config.hidden_size, num_heads=num_heads or config.num_heads,
                      layer_idx=layer_idx, norm_eps=config.norm_eps, **config.layer_kwargs)
    return layer.float()


def output_of(result, batch: int, length: int, hidden: int) -> tuple[torch.Tensor, str | None]:
    """The layer's output tensor and a contract problem, if any."""
    if not isinstance(result, (tuple, list)):
        got = f"a bare {type(result).__name__}" + (f" {tuple(result.shape)}" if hasattr(result, "shape") else "")
        return result, f"returned {got}; the contract is a tuple (o, attentions, past_key_values)"
    if len(result) != 3:
        return result[0] if result else None, (f"returned a {type(result).__name__} of {len(result)} items; the "
                                               "contract is (o, attentions, past_key_values)")
    o = result[0]
    if not isinstance(o, torch.Tensor):
        return o, f"the first item is a {type(o).__name__}, not a tensor"
    if tuple(o.shape) != (batch, length, hidden):
        return o, f"output shape {tuple(o.shape)} for input {(batch, length, hidden)}; expected the input's shape"
    if not o.is_floating_point():
        return o, f"output dtype {o.dtype}; expected a floating-point tensor"
    return o, None


def random_input(config: ProbeConfig, batch: int, length: int, seed: int, hidden: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, hidden or config.hidden_size, generator=generator)


def forward_checks(layer: nn.Module, config: ProbeConfig) -> list[dict]:
    """forward, finite and gradients: forward and backward at every batch size and length."""
    layer.train()
    contract, finite, no_grad = [], [], set()
    trainable = {name: p for name, p in layer.named_parameters() if p.requires_grad}
    for batch in config.batch_sizes:
        for length in config.lengths:
            shape = f"B={batch} T={length}"
            layer.zero_grad(set_to_none=True)
            x = random_input(config, batch, length, seed=config.seed + 7 * batch + length)
            try:
                with config.precision():
                    o, problem = output_of(layer(x), batch, length, config.hidden_size)
                if problem:
                    contract.append(f"{shape}: {problem}")
                    continue
                if not torch.isfinite(o).all():
                    finite.append(f"{shape}: {_count_bad(o)} of {o.numel()} outputs are NaN or infinite")
                    continue
                # A random direction, so that every output element carries gradient.
                weights = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
                (o.float() * weights).mean().backward()
            except Exception as exc:  # noqa: BLE001 (any failure of the program is the finding)
                return [check("forward", False, f"{shape}: {describe_error(exc)}")]
            for name, p in trainable.items():
                if p.grad is None:
                    no_grad.add(name)
                elif not torch.isfinite(p.grad).all():
                    finite.append(f"{shape}: the gradient of {name} has {_count_bad(p.grad)} NaN/inf values")
    shapes = f"batch sizes {list(config.batch_sizes)} x lengths {list(config.lengths)}"
    results = [check("forward", not contract, "; ".join(contract) or f"forward and backward ran for {shapes}")]
    if contract:
        return results
    results.append(check("finite", not finite, "; ".join(finite[:5]) or "outputs and gradients are finite"))
    unused = sorted(no_grad)
    detail = (f"{len(unused)} of {len(trainable)} trainable parameters get no gradient (unused?): "
              f"{', '.join(unused[:12])}" if unused else "every trainable parameter receives a gradient")
    results.append(check("gradients", True, detail, hard=False, unused=unused, warning=bool(unused)))
    return results


def _count_bad(t: torch.Tensor) -> int:
    return int((~torch.isfinite(t)).sum())


def params_check(layer: nn.Module, config: ProbeConfig) -> dict:
    count = sum(p.numel() for p in layer.parameters())
    ok = count <= config.max_layer_params
    relation = "within" if ok else "over"
    return check("params", ok, f"{count:,} parameters per layer, {relation} the budget of "
                               f"{config.max_layer_params:,} at hidden size {config.hidden_size}",
                 params=count, budget=config.max_layer_params)


@torch.no_grad()
def _eval_output(layer: nn.Module, x: torch.Tensor, config: ProbeConfig) -> torch.Tensor:
    with config.precision():
        o, problem = output_of(layer(x), x.shape[0], x.shape[1], x.shape[2])
    if problem:
        raise ValueError(problem)
    return o.float()


def _relative(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    return float((a - b).abs().max()) / scale if a.numel() else 0.0


def _tolerance(layer: nn.Module, x: torch.Tensor, reference: torch.Tensor, config: ProbeConfig) -> tuple[float, float]:
    """(scale of the outputs, allowed relative change): rtol, or more when the layer is not deterministic."""
    scale = float(reference.abs().max()) + 1e-6
    noise = _relative(_eval_output(layer, x, config), reference, scale)
    return scale, max(config.tolerance, 10 * noise)


def causality_check(layer: nn.Module, config: ProbeConfig) -> dict:
    """Outputs up to t may not move when only the inputs after t change."""
    layer.eval()
    length = config.causal_length
    x = random_input(config, 2, length, seed=config.seed + 101)
    reference = _eval_output(layer, x, config)
    scale, tol = _tolerance(layer, x, reference, config)
    changes, leaks = {}, []
    for t in (p for p in config.causal_points if p < length - 1):
        perturbed = x.clone()
        perturbed[:, t + 1:] = random_input(config, 2, length - t - 1, seed=config.seed + 1000 + t)
        out = _eval_output(layer, perturbed, config)
        change = _relative(out[:, :t + 1], reference[:, :t + 1], scale)
        changes[t] = change
        if change > tol or not math.isfinite(change):
            first = _first_changed(out, reference, scale * tol, t)
            leaks.append(f"changing the tokens after position {t} changed the outputs up to it by {change:.2e} "
                         f"(relative; allowed {tol:.0e}), first at position {first}")
    points = ", ".join(f"t={t}: {c:.1e}" for t, c in changes.items())
    if leaks:
        return check("causality", False, "the layer reads future tokens: " + "; ".join(leaks), changes=changes)
    return check("causality", True, f"earlier outputs unchanged when later tokens change ({points})", changes=changes)


def _first_changed(out: torch.Tensor, reference: torch.Tensor, atol: float, t: int) -> int:
    per_position = (out[:, :t + 1] - reference[:, :t + 1]).abs().amax(dim=(0, 2))
    moved = torch.nonzero(~(per_position <= atol)).flatten()
    return int(moved[0]) if moved.numel() else t


def batch_check(layer: nn.Module, config: ProbeConfig) -> dict:
    """Each sample of a batch gets the output it gets alone: no mixing across the batch dimension."""
    layer.eval()
    x = random_input(config, 3, config.batch_length, seed=config.seed + 202)
    together = _eval_output(layer, x, config)
    scale, tol = _tolerance(layer, x, together, config)
    changes = []
    for i in range(x.shape[0]):
        alone = _eval_output(layer, x[i:i + 1], config)
        changes.append(_relative(alone[0], together[i], scale))
    worst = max(changes)
    if worst > tol or not math.isfinite(worst):
        sample = changes.index(worst)
        return check("batch", False, f"sample {sample}'s output differs by {worst:.2e} (relative; allowed {tol:.0e}) "
                                     "between running alone and inside a batch of 3: the layer mixes samples",
                     changes=changes)
    return check("batch", True, f"each sample's output is the same alone and in a batch (max change {worst:.1e})",
                 changes=changes)


def lm_step_check(layer_cls: type[nn.Module], config: ProbeConfig) -> dict:
    """One training step of the real LM shell, with more than one block so that layer_idx > 0 is exercised."""
    from trainer.model import LM, LMConfig

    lm_config = LMConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_layers=config.lm_layers,
                         num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, tie_embeddings=config.tie_embeddings,
                         norm_eps=config.norm_eps, max_seq_len=64, layer_kwargs=dict(config.layer_kwargs))
    torch.manual_seed(config.seed)
    model = LM(lm_config, layer_cls).float().train()
    tokens = torch.randint(0, config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(config.seed))
    with config.precision():
        loss = model(tokens, labels=tokens).loss
    if not torch.isfinite(loss):
        return check("lm_step", False, f"the LM loss is {float(loss)} on random tokens")
    loss.backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        return check("lm_step", False, f"a training step of the LM gives non-finite gradients in {', '.join(bad[:6])}")
    return check("lm_step", True, f"one LM training step with {config.lm_layers} blocks: loss {float(loss.detach()):.3f} "
                                  f"(ln vocab = {math.log(config.vocab_size):.3f})", loss=float(loss.detach()))


def cost_check(layer_cls: type[nn.Module], config: ProbeConfig) -> dict:
    """Forward time at each length; the exponent of the last doubling decides the flag.

    Time is this thread's CPU time, not the wall clock, with torch on one thread. Not the process's
    CPU time: the sandbox's CPU-time limit arms a process timer, and the kernel then updates the
    process clock only at scheduler ticks (4 ms steps), too coarse for a 1 ms forward. A busy machine
    still inflates CPU time (shared caches, stolen cycles), so the lengths are timed in turns, each
    round covering all of them, and each keeps its fastest round: interference only ever adds time.
    """
    hidden = min(config.hidden_size, config.cost_hidden_size)
    layer = build_layer(layer_cls, config, hidden_size=hidden, num_heads=config.cost_heads).eval()
    inputs = {t: random_input(config, 1, t, seed=config.seed + t, hidden=hidden) for t in config.cost_lengths}
    times: dict[int, float] = {}
    with torch.no_grad(), config.precision():
        for length, x in inputs.items():
            started = time.thread_time()
            layer(x)  # warm-up: first-call allocations and lazy initialisation
            times[length] = time.thread_time() - started
        # A slow layer gets fewer rounds, keeping the whole check within its time limit.
        rounds = config.cost_repeats if max(times.values()) < 2.0 else 1
        for _ in range(rounds):
            for length, x in inputs.items():
                started = time.thread_time()
                layer(x)
                times[length] = min(times[length], time.thread_time() - started)
    lengths = list(config.cost_lengths)
    # A floor of a microsecond keeps an implausibly fast layer from dividing by zero.
    times = {t: max(v, 1e-6) for t, v in times.items()}
    exponents = [math.log(times[b] / times[a]) / math.log(b / a) for a, b in zip(lengths, lengths[1:], strict=False)]
    exponent = exponents[-1]
    shown = ", ".join(f"T={t}: {times[t] * 1000:.1f} ms" for t in lengths)
    flagged = exponent > config.quadratic_exponent
    verdict = (f"cost grows like T^{exponent:.2f} (over {config.quadratic_exponent}): quadratic in length?"
               if flagged else f"cost grows like T^{exponent:.2f}, sub-quadratic")
    return check("cost_growth", not flagged, f"{verdict} ({shown})", hard=False, exponent=round(exponent, 3),
                 exponents=[round(e, 3) for e in exponents], times_s={str(t): times[t] for t in lengths},
                 warning=flagged)


def run_checks(layer_cls: type[nn.Module], config: ProbeConfig,
               on_check: Callable[[list[dict], str | None], None] | None = None) -> dict:
    """Every check in order; `on_check(checks_so_far, next_check)` lets the caller save progress."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.threads))
    try:
        return _run_checks(layer_cls, config, on_check)
    finally:
        torch.set_num_threads(threads)


def _run_checks(layer_cls: type[nn.Module], config: ProbeConfig,
                on_check: Callable[[list[dict], str | None], None] | None) -> dict:
    started = time.monotonic()
    checks: list[dict] = []
    params = None

    def guarded(name: str, run: Callable[[], dict | list[dict]], hard: bool = True) -> None:
        if on_check:
            on_check(checks, name)
        try:
            result = run()
        except Exception as exc:  # noqa: BLE001 (any failure of the program is the finding)
            result = check(name, False, describe_error(exc), hard=hard)
        checks.extend(result if isinstance(result, list) else [result])

    layer = None
    try:
        layer = build_layer(layer_cls, config)
        params = sum(p.numel() for p in layer.parameters())
        checks.append(check("construct", True, f"built with hidden_size={config.hidden_size}, "
                                               f"num_heads={config.num_heads}; runs in {config.autocast or 'float32'}"))
    except Exception as exc:  # noqa: BLE001
        checks.append(check("construct", False, f"the constructor failed: {describe_error(exc)}"))
    if layer is not None:
        guarded("params", lambda: params_check(layer, config))
        guarded("forward", lambda: forward_checks(layer, config))
        # With a broken forward or NaN outputs, the comparisons below would only repeat that finding.
        if _passed(checks, "forward") and _passed(checks, "finite"):
            guarded("causality", lambda: causality_check(layer, config))
            guarded("batch", lambda: batch_check(layer, config))
            guarded("lm_step", lambda: lm_step_check(layer_cls, config))
            guarded("cost_growth", lambda: cost_check(layer_cls, config), hard=False)
    if on_check:
        on_check(checks, None)
    return summarise(checks, params, time.monotonic() - started)


def _passed(checks: list[dict], name: str) -> bool:
    return any(c["name"] == name and c["ok"] for c in checks)


def summarise(checks: list[dict], params: int | None, seconds: float) -> dict:
    failed = [c["name"] for c in checks if c["hard"] and not c["ok"]]
    flagged = [c["name"] for c in checks if not c["hard"] and (not c["ok"] or c.get("warning"))]
    required = {"construct", "forward", "causality", "batch", "params", "lm_step"}
    ran = {c["name"] for c in checks}
    return {"ok": not failed and required <= ran, "checks": checks, "failed": failed, "flagged": flagged,
            "params_per_layer": params, "seconds": round(seconds, 3)}
