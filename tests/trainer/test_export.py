"""An exported candidate loads with transformers' Auto classes, generates, and gives the project's logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.cli import guard
from trainer.export import main
from trainer.layers import load_layer_class, seed_program
from trainer.model import LM, LMConfig

EOS = "<|endoftext|>"
ROOT = Path(__file__).resolve().parents[2]


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["The river ran slowly past the old mill.", "A cart rolled over the bridge."] * 20,
                            trainer=trainer)
    return tok


def exported(root: Path, program: str, tied: bool) -> tuple[Path, Path]:
    """A tiny checkpoint of `program` and its export, made through the command line's `main`."""
    torch.manual_seed(0)
    tok = tokenizer()
    config = LMConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_layers=2, num_heads=2, max_seq_len=64,
                      tie_embeddings=tied, eos_token_id=tok.token_to_id(EOS))
    model = LM(config, load_layer_class(program, name="export_test"))
    if not tied:  # a head that differs from the embedding, so a mix-up shows in the logits
        torch.nn.init.normal_(model.head.weight, std=0.5)
    checkpoint = save_checkpoint(root / "checkpoint", model, program, tok, fidelity="smoke")
    before = set(sys.modules)
    assert guard(main, ["--checkpoint", str(checkpoint), "--out", str(root / "hf")]) == 0
    # The exporter copies the untrusted program; it never imports it.
    assert not [name for name in set(sys.modules) - before if "layer_program" in name or "transformers_modules" in name]
    return checkpoint, root / "hf"


@pytest.fixture(scope="module", params=["seed_tied", "candidate_untied"])
def export_pair(request, tmp_path_factory):
    seed = request.param == "seed_tied"
    # A "candidate": the seed's code under a different text, so it is not recognised as fla's own layer.
    program = seed_program() if seed else seed_program() + "\n# an evolved variant\n"
    checkpoint, out = exported(tmp_path_factory.mktemp(request.param), program, tied=seed)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    return seed, checkpoint, out, model, load_checkpoint(checkpoint).model


def test_logits_equal_the_projects_model(export_pair):
    _, _, _, hf, ours = export_pair
    ids = torch.randint(0, ours.config.vocab_size, (3, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (hf(ids).logits - ours(ids).logits).abs().max().item()
    assert difference <= 1e-5


def test_generate_greedy_follows_the_projects_model(export_pair):
    from transformers import AutoTokenizer

    _, _, out, hf, ours = export_pair
    hf_tokenizer = AutoTokenizer.from_pretrained(out)
    ids = hf_tokenizer("The river ran", return_tensors="pt").input_ids
    generated = hf.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=None)
    expected = ids
    with torch.no_grad():
        for _ in range(6):
            expected = torch.cat([expected, ours(expected).logits[:, -1:].argmax(-1)], dim=1)
    assert generated.tolist() == expected.tolist()
    sampled = hf.generate(ids, max_new_tokens=4, do_sample=True, top_k=20, eos_token_id=None)
    assert sampled.shape == (1, ids.shape[1] + 4)
    assert hf_tokenizer.eos_token == EOS and hf_tokenizer.decode(ids[0]) == "The river ran"


def test_folder_carries_its_training_recipe(export_pair):
    seed, _, out, _, ours = export_pair
    flame = json.loads((out / "flame_config.json").read_text())
    assert flame["model_type"] == "delta_net" and flame["hidden_size"] == ours.config.hidden_size
    assert flame["intermediate_size"] == ours.blocks[0].mlp.down.in_features  # the same MLP as the shell
    readme = (out / "README.md").read_text()
    assert ("fla builds natively" in readme) == seed
    assert ("delta_net.DeltaNet = DeltaNet" in readme) != seed


def test_folder_works_without_the_project(export_pair, tmp_path):
    """A fresh interpreter, outside the repository, with nothing of the project importable."""
    seed, _, out, _, ours = export_pair
    if seed:
        pytest.skip("a fresh interpreter costs seconds: the untied candidate is the harder case, it runs there")
    ids = torch.randint(0, ours.config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(2))
    torch.save(ids, tmp_path / "ids.pt")
    script = (
        "import importlib.util, sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "assert importlib.util.find_spec('trainer') is None, 'the project is importable'\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()\n"
        f"AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)\n"
        "with torch.no_grad():\n"
        "    torch.save(model(torch.load('ids.pt')).logits, 'logits.pt')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        difference = (torch.load(tmp_path / "logits.pt") - ours(ids).logits).abs().max().item()
    assert difference <= 1e-5


def one_line_error(argv: list[str], capsys) -> str:
    try:
        code = guard(main, argv)
    except SystemExit as stop:  # argparse's own complaints
        code = stop.code
    err = capsys.readouterr().err
    assert code not in (0, None)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_bad_arguments_are_one_line(tmp_path, capsys):
    checkpoint, _ = exported(tmp_path, seed_program(), tied=True)
    capsys.readouterr()  # the export's own report
    assert "/does/not/exist" in one_line_error(["--checkpoint", "/does/not/exist", "--out", str(tmp_path / "x")], capsys)
    assert "no config.json" in one_line_error(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")], capsys)
    assert "--out" in one_line_error(["--checkpoint", str(checkpoint)], capsys)
    assert "not an empty directory" in one_line_error(["--checkpoint", str(checkpoint), "--out", str(checkpoint)],
                                                      capsys)
    (checkpoint / "program.py").write_text(seed_program() + "\nimport os\n")  # swapped after training
    assert "sha256" in one_line_error(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "y")], capsys)


def test_command_line_reports_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainer.export", "--checkpoint", str(tmp_path / "missing"),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: argument --checkpoint: no such directory: {tmp_path / 'missing'} (see --help)"
