"""The boundary between trusted code and a candidate program: a model server in a sandboxed child.

    with SandboxedModel(model_dir, workdir=..., device="cpu") as model:
        logits = model(ids)                             # [B, T, V] float32
        pieces = model.gather(ids, [(3, 7), (0, 5)])    # the logits of chosen positions, row by row
        logits, layout, state = model.prefill(ids)      # read with a decoding cache, and that cache
        later = other.resume(more_ids, layout, state, offset=ids.shape[1])  # continue from a cache sent

The child (`python -m trainer.boundary MODEL_DIR`) imports the program, builds the LM that
MODEL_DIR/config.json describes, loads MODEL_DIR/model.safetensors (or, for the engineer's checks,
initialises the weights from the config's `init_seed`) and answers requests: token ids in, logits
out. It never sees labels, data files or scores. The parent, with none of the program's code loaded,
chooses every input and computes every number from the logits (loss, accuracy, causality:
`trainer.judge`). Whatever the program patches inside the child, all it can change is the logits
of inputs it is shown, and the parent checks those for leaks.

Frames go both ways as: an 8-byte little-endian header length, a JSON header, the raw payload.
    request    {"shape": [B, T], "slices": [[start, end], ...] or null, "train": bool, "grad": bool} + int64 ids
    response   {"shape": [...]} + float32 logits, or {"error": "..."} with no payload
    prefill    {"kind": "prefill", "shape": [B, T]} + ids
               -> {"shape": [...], "state": layout, "state_bytes": n} + logits + n bytes of safetensors
    continue   {"kind": "continue", "shape": [B, T], "state": layout, "state_bytes": n, "offset": P} + ids + state
               -> {"shape": [...]} + logits
The decoding state travels as `trainer.state_codec` packs it: tensors only, never a pickle.
A child that answers a malformed frame or a wrong shape, fails a request or dies makes the parent
raise `ModelFailed` with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import struct
import sys
from pathlib import Path

import torch

from trainer.cores import claimed_cores
from trainer.gpu_share import limit_gpu_memory

HEADER = struct.Struct("<Q")
MAX_HEADER_BYTES = 1 << 20
MAX_REPLY_BYTES = 4 << 30


class ModelFailed(RuntimeError):
    """The candidate's model server failed a request, broke the protocol, or died."""


def write_frame(stream, header: dict, payload: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    stream.write(HEADER.pack(len(encoded)) + encoded)
    stream.write(payload)
    stream.flush()


def _read_exactly(stream, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError(f"the stream ended {left} bytes short of a frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_header(stream) -> dict | None:
    """The next frame's header; None at a clean end of stream."""
    prefix = stream.read(HEADER.size)
    if not prefix:
        return None
    if len(prefix) < HEADER.size:
        prefix += _read_exactly(stream, HEADER.size - len(prefix))
    (length,) = HEADER.unpack(prefix)
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"a frame header of {length} bytes is over the {MAX_HEADER_BYTES} byte limit")
    header = json.loads(_read_exactly(stream, length))
    if not isinstance(header, dict):
        raise ValueError("a frame header must be a JSON object")
    return header


# ------------------------------------------------------------------ parent side (trusted)

class SandboxedModel:
    """Logits of a candidate's model, computed in a fresh sandboxed child; usable as a `forward`."""

    def __init__(self, model_dir: Path, *, workdir: Path, device: str = "cpu", timeout_s: float = 1800,
                 memory_mb: int = 8192, threads: int | None = None, stop=None):
        self.model_dir, self.workdir, self.device = Path(model_dir).resolve(), Path(workdir), device
        self.vocab_size = int(json.loads((self.model_dir / "config.json").read_text())["lm"]["vocab_size"])
        # The server writes nothing of its own; room for compiled kernels and logs only.
        self.options = {"timeout_s": timeout_s, "memory_mb": memory_mb, "disk_mb": 512, "stop": stop}
        self.threads = threads  # default: the cores claimed for it while it runs (`trainer.cores`)
        self._claim = contextlib.ExitStack()
        self.sandbox = None
        self.result = None

    def start(self) -> SandboxedModel:
        from trainer.sandbox import spawn_sandboxed

        if self.threads is None:
            self.threads = self._claim.enter_context(claimed_cores())
        argv = [sys.executable, "-m", "trainer.boundary", str(self.model_dir), "--device", self.device]
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if not self.device.startswith("cuda"):
            env["CUDA_VISIBLE_DEVICES"] = ""
        self.sandbox = spawn_sandboxed(argv, workdir=self.workdir, env=env, readable=[self.model_dir], pipes=True,
                                       cuda=self.device.startswith("cuda"), **self.options)
        return self

    def __enter__(self) -> SandboxedModel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self):
        if self.sandbox is not None and self.result is None:
            for stream in (self.sandbox.process.stdin, self.sandbox.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.result = self.sandbox.close()
        self._claim.close()
        return self.result

    def _failure(self, what: str) -> ModelFailed:
        """Why the child stopped answering: a broken limit, its last error line, or `what`."""
        reason = self.sandbox.broken_limit() if self.sandbox else None
        if reason is None and self.sandbox is not None:
            result = self.close()
            reason = result.reason if result and not result.ok else None
            tail = (result.stderr_tail.strip().splitlines() or [""])[-1] if result else ""
            reason = reason or (tail[:300] or None)
        return ModelFailed(f"the model server {what}" + (f": {reason}" if reason else ""))

    def _ids(self, ids: torch.Tensor) -> torch.Tensor:
        if self.sandbox is None:
            self.start()
        ids = ids.to(torch.int64).contiguous().cpu()
        if ids.dim() != 2:
            raise ValueError(f"ids must be [batch, length], got shape {tuple(ids.shape)}")
        return ids

    def request(self, ids: torch.Tensor, slices: list[tuple[int, int]] | None = None, *, train: bool = False,
                grad: bool = False) -> torch.Tensor:
        """Logits [B, T, V] for ids [B, T], or [sum of slice lengths, V] for the rows' slices."""
        ids = self._ids(ids)
        if slices is not None:
            if len(slices) != len(ids) or any(not 0 <= s < e <= ids.shape[1] for s, e in slices):
                raise ValueError("one slice [start, end) within the row per row is needed")
            expected = [sum(e - s for s, e in slices), self.vocab_size]
        else:
            expected = [*ids.shape, self.vocab_size]
        header = {"shape": list(ids.shape), "slices": [list(map(int, s)) for s in slices] if slices else None,
                  "train": bool(train), "grad": bool(grad)}
        return self._exchange(header, ids.numpy().tobytes(), expected)[0]

    def prefill(self, ids: torch.Tensor) -> tuple[torch.Tensor, list, bytes]:
        """Logits [B, T, V] of ids read with a decoding cache, and that cache as (layout, safetensors bytes)."""
        ids = self._ids(ids)
        header = {"kind": "prefill", "shape": list(ids.shape)}
        logits, reply, state = self._exchange(header, ids.numpy().tobytes(), [*ids.shape, self.vocab_size],
                                              with_state=True)
        return logits, reply.get("state"), state

    def resume(self, ids: torch.Tensor, layout: list, state: bytes, *, offset: int) -> torch.Tensor:
        """Logits [B, T, V] of ids read after the `offset` tokens of context that the cache (layout, state) holds."""
        ids = self._ids(ids)
        header = {"kind": "continue", "shape": list(ids.shape), "state": layout, "state_bytes": len(state),
                  "offset": int(offset)}
        return self._exchange(header, ids.numpy().tobytes() + state, [*ids.shape, self.vocab_size])[0]

    def _exchange(self, header: dict, payload: bytes, expected: list[int],
                  with_state: bool = False) -> tuple[torch.Tensor, dict, bytes]:
        """Send one request; (logits of the expected shape, the reply's header, the state bytes it carried)."""
        process = self.sandbox.process
        try:
            write_frame(process.stdin, header, payload)
            reply = read_header(process.stdout)
            if reply is None:
                raise EOFError("no reply")
            if "error" in reply:
                raise ModelFailed(f"the model failed on a batch of shape {header['shape']}: {reply['error']}")
            if reply.get("shape") != expected:
                raise ModelFailed(f"the model server answered logits of shape {reply.get('shape')}, "
                                  f"expected {expected}")
            size = 4 * int(torch.tensor(expected).prod())
            state_size = reply.get("state_bytes", 0) if with_state else 0
            if not isinstance(state_size, int) or state_size < 0 or size + state_size > MAX_REPLY_BYTES:
                raise ModelFailed(f"a reply of {size} + {state_size} bytes is over the {MAX_REPLY_BYTES} byte limit")
            logits = _read_exactly(process.stdout, size)
            state = _read_exactly(process.stdout, state_size)
        except (OSError, EOFError, ValueError) as err:
            raise self._failure(f"stopped answering ({err})") from err
        return torch.frombuffer(bytearray(logits), dtype=torch.float32).view(*expected), reply, state

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.request(ids)

    def gather(self, ids: torch.Tensor, slices: list[tuple[int, int]]) -> list[torch.Tensor]:
        """The logits of positions [start, end) of each row, one tensor per row."""
        flat = self.request(ids, slices)
        return list(flat.split([e - s for s, e in slices]))


# ------------------------------------------------------------------ child side (runs the program)

def _build(model_dir: Path, device: str):
    from trainer.checkpoint import load_checkpoint
    from trainer.layers import load_layer_class, route_fla
    from trainer.model import LM, LMConfig

    route_fla(use_kernels=None if device.startswith("cuda") else False)
    config = json.loads((model_dir / "config.json").read_text())
    if (model_dir / "model.safetensors").exists():
        return load_checkpoint(model_dir, device=device).model, config
    torch.manual_seed(int(config.get("init_seed", 0)))
    layer = load_layer_class((model_dir / "program.py").read_text(), name="program")
    return LM(LMConfig.from_dict(config["lm"]), layer).to(device), config


def _read_ids(header: dict, payload: bytes, device: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(payload), dtype=torch.int64).view(*header["shape"]).to(device)


def _answer(model, header: dict, payload: bytes, device: str, autocast: bool) -> torch.Tensor:
    ids = _read_ids(header, payload, device)
    model.train(bool(header.get("train")))
    with torch.set_grad_enabled(bool(header.get("grad"))), \
            torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(ids)
    logits = (out if isinstance(out, torch.Tensor) else out.logits).detach().float().cpu()
    if header.get("slices"):
        logits = torch.cat([logits[row, start:end] for row, (start, end) in enumerate(header["slices"])])
    return logits.contiguous()


def _decode(model, header: dict, payload: bytes, state: bytes, device: str,
            autocast: bool) -> tuple[torch.Tensor, dict, bytes]:
    """A "prefill" (ids from no context; the reply carries the cache) or a "continue" (ids after a cache sent)."""
    from fla.models.utils import Cache  # routed by _build: fla's own on CUDA, trainer.fla_cpu's elsewhere

    from trainer.state_codec import pack, unpack

    ids = _read_ids(header, payload, device)
    if header["kind"] == "prefill":
        cache = Cache()
    else:
        cache = Cache.from_legacy_cache(unpack(header["state"], state, device=device)[0],
                                        seen_tokens=int(header["offset"]))
    model.eval()
    with torch.no_grad(), torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits, cache = model.decode(ids, cache)
    logits = logits.float().cpu().contiguous()
    if header["kind"] != "prefill":
        return logits, {}, b""
    layout, blob = pack(cache)
    return logits, {"state": layout, "state_bytes": len(blob)}, blob


def serve(model_dir: Path, device: str) -> None:
    # The protocol keeps private copies of stdin and stdout; the program's prints go to stderr instead.
    requests, replies = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    limit_gpu_memory(device)
    model, config = _build(model_dir, device)
    # bfloat16 on CUDA (fla's fused kernels refuse float32), and wherever the model trained in it.
    autocast = config.get("dtype") == "bfloat16" or device.startswith("cuda")
    while (header := read_header(requests)) is not None:
        count = 1
        for size in header["shape"]:
            count *= int(size)
        payload = _read_exactly(requests, 8 * count)
        state = _read_exactly(requests, int(header.get("state_bytes") or 0))
        try:
            if header.get("kind") in ("prefill", "continue"):
                logits, extra, tail = _decode(model, header, payload, state, device, autocast)
            else:
                logits, extra, tail = _answer(model, header, payload, device, autocast), {}, b""
        except Exception as err:  # the candidate's failure: reported to the parent, which decides
            write_frame(replies, {"error": f"{type(err).__name__}: {err}"[:2000]})
            continue
        write_frame(replies, {"shape": list(logits.shape), **extra}, logits.numpy().tobytes() + tail)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a candidate model's logits over stdin/stdout.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    serve(args.model_dir, args.device)


if __name__ == "__main__":
    main()
