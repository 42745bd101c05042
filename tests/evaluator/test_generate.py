"""The playground samples from a candidate whose code stays in the sandbox, and reads mistakes back in one line."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluator.generate import Stream, generate, main, next_token, sample
from trainer.checkpoint import load_checkpoint
from trainer.cli import guard
from trainer.jail import probe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _jail_or_weak(monkeypatch):
    # As the boundary's tests: without the kernel jail the protocol still runs, under the weak sandbox.
    if not probe().available:
        monkeypatch.setenv("SANDBOX_ISOLATION", "weak")


def test_generation_runs_the_candidate_in_the_sandbox(checkpoint_dir, tiny_tokenizer):
    out, log = io.StringIO(), io.StringIO()
    before = set(sys.modules)
    text = generate(checkpoint_dir, "Question: Which", max_new_tokens=8, temperature=0, out=out, log=log)
    # The program ran only in the child: nothing of it was imported here.
    assert not [name for name in set(sys.modules) - before if name.startswith("layer_program")]
    assert out.getvalue() == "Question: Which" + text + "\n"
    assert "sandbox" in log.getvalue() and "tokens in" in log.getvalue()

    # The same greedy continuation from the model run here (the seed is trusted code).
    model = load_checkpoint(checkpoint_dir).model
    with torch.no_grad():
        expected = sample(lambda ids: model(ids).logits, tiny_tokenizer.encode("Question: Which").ids,
                          max_new_tokens=8, window=64, eos_id=0, temperature=0)
    assert expected and text == tiny_tokenizer.decode(expected)


class Scripted:
    """A stand-in model whose next-token logits are fixed: token t is followed by t + 1."""

    vocab = 10

    def __init__(self):
        self.lengths = []

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.lengths.append(ids.shape[1])
        logits = torch.full((1, ids.shape[1], self.vocab), -5.0)
        logits[0, -1, (int(ids[0, -1]) + 1) % self.vocab] = 5.0
        return logits


def test_sampling_options():
    model = Scripted()
    assert sample(model, [1], max_new_tokens=4, window=3, eos_id=None, temperature=0) == [2, 3, 4, 5]
    assert model.lengths == [1, 2, 3, 3]  # the window keeps the trained length
    assert sample(Scripted(), [1], max_new_tokens=9, window=3, eos_id=4, temperature=0) == [2, 3]  # stops at eos
    assert sample(Scripted(), [1], max_new_tokens=5, window=8, eos_id=None, temperature=1.0, top_k=1) == [2, 3, 4, 5, 6]
    seeded = [sample(Scripted(), [1], max_new_tokens=6, window=8, eos_id=None, temperature=50.0, seed=s)
              for s in (3, 3, 4)]
    assert seeded[0] == seeded[1] != seeded[2]  # a seed gives the same text; another seed another
    generator = torch.Generator().manual_seed(0)
    row = torch.tensor([0.0, 3.0, 2.0, 1.0])
    assert {next_token(row, 10.0, 2, generator) for _ in range(200)} == {1, 2}  # only the top 2


def test_stream_holds_back_half_a_character(tiny_tokenizer):
    out = io.StringIO()
    stream = Stream(tiny_tokenizer, out, prompt="Say:")
    ids = tiny_tokenizer.encode(" café ok").ids
    for end in range(1, len(ids) + 1):
        stream.update(ids[:end])
        assert "\ufffd" not in out.getvalue()
    assert out.getvalue() == "Say: café ok"
    assert stream.finish(ids) == " café ok" and out.getvalue() == "Say: café ok\n"
    silent = io.StringIO()
    Stream(tiny_tokenizer, silent, prompt="Say:").finish([])  # nothing sampled: the prompt still shows
    assert silent.getvalue() == "Say:\n"


def one_line_error(argv: list[str], capsys) -> str:
    try:
        code = guard(main, argv)
    except SystemExit as stop:  # argparse's own complaints
        code = stop.code
    captured = capsys.readouterr()
    assert code not in (0, None)
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    return captured.err


def test_bad_arguments_are_one_line(checkpoint_dir, tmp_path, capsys):
    ckpt = str(checkpoint_dir)
    assert "/does/not/exist" in one_line_error(["--checkpoint", "/does/not/exist", "--prompt", "x"], capsys)
    assert "no config.json" in one_line_error(["--checkpoint", str(tmp_path), "--prompt", "x"], capsys)
    assert "--prompt" in one_line_error(["--checkpoint", ckpt], capsys)
    assert "'0'" in one_line_error(["--checkpoint", ckpt, "--prompt", "x", "--max-new-tokens", "0"], capsys)
    assert "'hot'" in one_line_error(["--checkpoint", ckpt, "--prompt", "x", "--temperature", "hot"], capsys)
    assert "'-1'" in one_line_error(["--checkpoint", ckpt, "--prompt", "x", "--temperature", "-1"], capsys)
    assert "'-3'" in one_line_error(["--checkpoint", ckpt, "--prompt", "x", "--top-k", "-3"], capsys)
    assert "cuda:N" in one_line_error(["--checkpoint", ckpt, "--prompt", "x", "--device", "tpu"], capsys)

    swapped = shutil.copytree(checkpoint_dir, tmp_path / "swapped")
    (swapped / "program.py").write_text((swapped / "program.py").read_text() + "\nimport os\n")
    assert "sha256" in one_line_error(["--checkpoint", str(swapped), "--prompt", "x"], capsys)
    no_text = shutil.copytree(checkpoint_dir, tmp_path / "no_text")
    (no_text / "tokenizer.json").unlink()
    assert "no tokenizer.json" in one_line_error(["--checkpoint", str(no_text), "--prompt", "x"], capsys)


def test_command_line_reports_without_traceback(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # passes --checkpoint's own check, to reach --top-k
    done = subprocess.run([sys.executable, "-m", "evaluator.generate", "--checkpoint", str(tmp_path),
                           "--prompt", "x", "--top-k", "many"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: argument --top-k: 'many' is not a whole number (see --help)"
