"""Training data: the split, the cached tokenizer and shards, local corpora, batches, unprepared datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainer import data
from trainer.fidelity import get_fidelity
from trainer.train import load_data

DOCS = [
    "\n".join(f"Line {i} of the first document, about ships and the sea." for i in range(60)),
    "\n".join(f"Entry {i}: the second document talks of gardens, roses and rain." for i in range(50)),
    "\n".join(f"Verse {i}, where the third document sings of kings and crowns." for i in range(40)),
]


@pytest.fixture
def local_corpus(tmp_path):
    """One .txt document and a .jsonl file holding two more."""
    directory = tmp_path / "corpus"
    directory.mkdir()
    (directory / "a.txt").write_text(DOCS[0])
    (directory / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS[1:]) + "\n")
    return directory


def test_split_keeps_the_last_twentieth_cut_at_a_line_break():
    train, val = data.split_document(DOCS[0])
    assert train + val == DOCS[0]
    assert train.endswith("\n") and val.startswith("Line ")
    assert 0.03 < len(val) / len(DOCS[0]) < 0.08
    unbroken = "x" * 1000
    train, val = data.split_document(unbroken)
    assert (len(train), len(val)) == (950, 50)


def test_local_txt_and_jsonl_files_are_documents(local_corpus, tmp_path, monkeypatch):
    assert list(data.documents(str(local_corpus))) == DOCS
    assert list(data.documents(str(local_corpus / "b.jsonl"))) == DOCS[1:]
    assert list(data.documents(str(local_corpus / "*.txt"))) == DOCS[:1]  # an absolute glob
    monkeypatch.chdir(tmp_path)
    assert list(data.documents("corpus/*.jsonl")) == DOCS[1:]  # a relative one
    with pytest.raises(FileNotFoundError, match="no files match"):
        list(data.documents(str(tmp_path / "nothing-*.txt")))


def test_prepare_tokenises_train_and_validation_text(local_corpus, tmp_path):
    prepared = data.prepare(str(local_corpus), 300, tmp_path / "cache", progress=False)
    assert prepared.directory == data.data_directory(tmp_path / "cache", str(local_corpus), 300)
    assert prepared.meta["vocab_size"] <= 300 and prepared.eos_token_id == prepared.tokenizer.token_to_id(data.EOS)
    assert len(prepared.train) == prepared.meta["train_tokens"] and len(prepared.val) == prepared.meta["val_tokens"]
    # Every document ends with EOS in both splits; validation text is the documents' tails.
    for split in (prepared.train, prepared.val):
        assert int((np.asarray(split) == prepared.eos_token_id).sum()) == len(DOCS)
    val_text = prepared.tokenizer.decode(np.asarray(prepared.val).tolist())
    for doc in DOCS:
        assert data.split_document(doc)[1] in val_text
    assert data.split_document(DOCS[0])[0] not in val_text


def test_prepare_is_deterministic_and_reuses_its_cache(local_corpus, tmp_path, monkeypatch):
    first = data.prepare(str(local_corpus), 300, tmp_path / "one", progress=False)
    second = data.prepare(str(local_corpus), 300, tmp_path / "two", progress=False)
    for name in ("train.bin", "val.bin", "tokenizer.json", "meta.json"):
        assert (first.directory / name).read_bytes() == (second.directory / name).read_bytes(), name

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been reused")

    monkeypatch.setattr(data, "train_tokenizer", no_training)
    monkeypatch.setattr(data, "documents", no_training)
    again = data.prepare(str(local_corpus), 300, tmp_path / "one", progress=False)
    assert again.meta == first.meta and np.array_equal(again.train, first.train)
    # Another vocabulary is another directory.
    assert data.data_directory(tmp_path / "one", str(local_corpus), 400) != first.directory


def test_two_workers_preparing_one_shared_cache_at_once_both_succeed(local_corpus, tmp_path, monkeypatch):
    # Trainers of a SLURM array share RUN_DIR/cache: both may find it empty and tokenise at the same time.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    both_writing = threading.Barrier(2, timeout=30)
    batches = data._batches

    def in_step(*args, **kwargs):
        both_writing.wait()  # each has opened its output files; neither has renamed them into place
        return batches(*args, **kwargs)

    monkeypatch.setattr(data, "_batches", in_step)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(data.prepare, str(local_corpus), 300, tmp_path / "cache", progress=False) for _ in range(2)]
        prepared = [run.result() for run in runs]
    assert prepared[0].meta == prepared[1].meta and np.array_equal(prepared[0].train, prepared[1].train)
    assert not list(prepared[0].directory.glob(".*tmp"))


def test_batches_are_seeded_and_validation_windows_fixed():
    tokens = np.arange(1000, dtype=np.uint16)
    a = data.random_windows(tokens, 16, 4, torch.Generator().manual_seed(1))
    b = data.random_windows(tokens, 16, 4, torch.Generator().manual_seed(1))
    c = data.random_windows(tokens, 16, 4, torch.Generator().manual_seed(2))
    assert a.shape == (4, 16) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(4, 15, dtype=torch.int64))  # contiguous windows
    val = data.validation_windows(tokens, 16, 5)
    assert val[:, 0].tolist() == [0, 245, 491, 737, 983] and torch.equal(val, data.validation_windows(tokens, 16, 5))
    with pytest.raises(ValueError, match="fewer than one sequence"):
        data.random_windows(tokens[:10], 16, 1, torch.Generator())
    with pytest.raises(ValueError, match="fewer than one sequence"):
        data.validation_windows(tokens[:16], 16, 1)


def test_an_unprepared_hub_dataset_is_a_clear_error(tmp_path, monkeypatch):
    def no_network(spec):
        raise AssertionError("load_data must not stream a hub dataset")

    monkeypatch.setattr(data, "hub_documents", no_network)
    fidelity = get_fidelity("explore")
    with pytest.raises(FileNotFoundError) as err:
        load_data(fidelity, tmp_path)
    message = str(err.value)
    assert f"dataset {fidelity.dataset!r} is not prepared in {tmp_path}" in message
    assert (f"python -m trainer.data prepare --dataset {fidelity.dataset} --vocab-size 32000 --cache {tmp_path}"
            in message)


def test_a_prepared_hub_dataset_is_streamed_once_then_loaded(tmp_path, monkeypatch):
    streamed = []

    def fake_hub(spec):
        streamed.append(spec)
        yield from DOCS

    monkeypatch.setattr(data, "hub_documents", fake_hub)
    fidelity = get_fidelity("smoke", {"dataset": "someone/corpus:config", "vocab_size": 300})
    prepared = data.prepare(fidelity.dataset, 300, tmp_path, progress=False, tokenizer_docs=2)
    assert streamed == ["someone/corpus:config"] * 2  # a sample for the tokenizer, then every document
    assert int((np.asarray(prepared.val) == prepared.eos_token_id).sum()) == len(DOCS)
    loaded = load_data(fidelity, tmp_path)
    assert loaded.data.directory == prepared.directory and len(streamed) == 2


def test_the_prepare_command(local_corpus, tmp_path, capsys):
    data.main(["prepare", "--dataset", str(local_corpus), "--vocab-size", "300", "--cache", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["vocab_size"] <= 300 and printed["train_tokens"] > 0
    assert (tmp_path / "data").is_dir() and printed["directory"].startswith(str(tmp_path))
