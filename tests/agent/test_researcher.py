"""The researcher: offline proposals, LLM designs with edits, novelty checks, and the analyst."""

import json

import pytest

from agent.analyst import handle_analyse, measured_deltas
from agent.cognition import ENTRIES, import_published
from agent.llm import BudgetExceeded, ScriptedLLM
from agent.researcher import Edit, apply_edits, handle_research, offline_designs
from database.worker import CandidateError
from trainer.layers import seed_program


class CannedLLM:
    """Answers structured requests from a list of JSON replies, recording the conversations."""

    def __init__(self, replies: list[str]):
        self.replies, self.calls = list(replies), []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    async def structured(self, messages, model):
        self.calls.append([dict(m) for m in messages])
        self.usage["prompt_tokens"] += 100
        self.usage["completion_tokens"] += 50
        return model.model_validate_json(self.replies.pop(0))


async def make_baseline(client, **train):
    seed = await client.create_experiment(name="seed", program=seed_program(), origin="seed", is_baseline=True,
                                          motivation="The seed DeltaNet baseline used for every comparison.")
    metrics = {"loss_curve": [[0, 7.6], [10, 6.0]], "val_loss": 5.0, "val_loss_start": 7.6, "tokens_per_s": 1000.0,
               "non_embedding_params": 100, **train}
    evaluation = {"tasks": {"arc_easy": {"metric": "acc", "value": 0.30, "stderr": 0.01},
                            "mqar": {"metric": "acc", "value": 0.20, "stderr": 0.01}},
                  "average": 0.30, "recall": 0.20}
    await client.update_experiment(seed["index"], train=metrics, eval=evaluation, status="evaluated")
    return seed


def test_edits_apply_exactly_once_or_are_reported():
    program, problems = apply_edits("a = 1\nb = 2\nb = 2\n", [Edit(search="a = 1", replace="a = 3"),
                                                             Edit(search="b = 2", replace="b = 4"),
                                                             Edit(search="zzz", replace="")])
    assert program == "a = 3\nb = 2\nb = 2\n"
    assert "occurs 2 times" in problems[0] and "does not occur" in problems[1]


async def test_offline_research_creates_a_child_of_the_baseline_and_hands_it_to_the_engineer(api_client):
    seed = await make_baseline(api_client)
    outcome = await handle_research({"id": "job-1", "payload": {"fidelity": "smoke", "seed": 3}}, api_client, llm=None)
    child = await api_client.get_experiment(outcome.result["experiment"])
    assert child["parent"] == seed["index"] and child["origin"] == "offline" and "# genome:" in child["program"]
    assert outcome.next_jobs == [{"kind": "engineer", "experiment": child["index"],
                                  "payload": {"fidelity": "smoke", "seed": 3}}]
    # The same job retried does not create a second experiment; another job with the same seed gets a new mutation.
    again = await handle_research({"id": "job-1", "payload": {"fidelity": "smoke", "seed": 3}}, api_client, llm=None)
    other = await handle_research({"id": "job-2", "payload": {"fidelity": "smoke", "seed": 3}}, api_client, llm=None)
    assert again.result["experiment"] == child["index"]
    assert other.result["experiment"] != child["index"]


async def test_the_proposal_seed_picks_the_mutation_and_the_training_seed_passes_on(api_client):
    baseline = await make_baseline(api_client)
    outcomes = [await handle_research({"id": f"job-{n}", "payload": {"fidelity": "smoke", "seed": 0, "proposal_seed": n}},
                                      api_client, llm=None) for n in (1, 2)]
    children = [await api_client.get_experiment(o.result["experiment"]) for o in outcomes]
    for n, child in zip((1, 2), children, strict=True):
        assert child["program"] == next(offline_designs(baseline, n)).program
    assert children[0]["program"] != children[1]["program"]
    # Training keeps the run's seed, the baseline's: candidate and baseline see the same data order.
    assert [o.next_jobs[0]["payload"]["seed"] for o in outcomes] == [0, 0]


async def test_a_spent_llm_budget_makes_the_researcher_propose_offline(api_client):
    await make_baseline(api_client)
    spent = ScriptedLLM([BudgetExceeded("3 calls of at most 3")])
    outcome = await handle_research({"id": "job-1", "payload": {"fidelity": "smoke"}}, api_client, llm=spent)
    child = await api_client.get_experiment(outcome.result["experiment"])
    assert child["origin"] == "offline" and "# genome:" in child["program"]


async def test_llm_edits_that_do_not_apply_are_sent_back_then_used(api_client):
    await make_baseline(api_client)
    bad = {"name": "wide-conv", "motivation": "Widen the short convolutions to see more local context per token.",
           "edits": [{"search": "conv_size: int = 99", "replace": "conv_size: int = 6"}]}
    good = {**bad, "edits": [{"search": "conv_size: int = 4", "replace": "conv_size: int = 6"}]}
    llm = CannedLLM([json.dumps(bad), json.dumps(good)])
    outcome = await handle_research({"id": "j", "payload": {"fidelity": "smoke"}}, api_client, llm=llm)
    child = await api_client.get_experiment(outcome.result["experiment"])
    assert "conv_size: int = 6" in child["program"] and child["origin"] == "llm"
    assert "did not apply" in llm.calls[1][-1]["content"] and "does not occur" in llm.calls[1][-1]["content"]
    assert child["costs"]["llm_tokens"] == 300


async def test_a_repeated_idea_is_sent_back_with_the_similar_ones(api_client):
    seed = await make_baseline(api_client)
    idea = "Add a data dependent forget gate to the delta rule memory so stale associations decay quickly."
    await api_client.create_experiment(name="earlier-gate", program=seed_program(), motivation=idea,
                                       parent=seed["index"])
    repeat = {"name": "gate-again", "motivation": idea, "program": seed_program()}
    fresh = {"name": "fir-path", "program": seed_program(),
             "motivation": "Fuse a parallel causal FIR branch over values with the delta path through a gate."}
    llm = CannedLLM([json.dumps(repeat), json.dumps({"duplicate": True, "reason": "same gate"}), json.dumps(fresh)])
    outcome = await handle_research({"id": "j", "payload": {"fidelity": "smoke"}}, api_client, llm=llm)
    child = await api_client.get_experiment(outcome.result["experiment"])
    assert child["name"] == "fir-path"
    assert "repeats experiments already run" in llm.calls[2][-1]["content"] and "earlier-gate" in llm.calls[2][-1]["content"]


async def test_research_without_a_baseline_is_a_clear_candidate_error(api_client):
    with pytest.raises(CandidateError, match="no baseline"):
        await handle_research({"id": "j", "payload": {"fidelity": "smoke"}}, api_client, llm=None)


async def test_offline_analysis_scores_against_the_baseline_with_judge_weight_zero(api_client):
    seed = await make_baseline(api_client)
    await handle_analyse({"id": "a0", "experiment": seed["index"]}, api_client, llm=None, judge=None)
    child = await api_client.create_experiment(name="child", program=seed_program(), parent=seed["index"],
                                               motivation="A child that should improve the loss of its parent.")
    await api_client.update_experiment(
        child["index"], status="evaluated",
        train={"loss_curve": [[0, 7.6]], "val_loss": 4.9, "tokens_per_s": 900.0, "non_embedding_params": 120},
        eval={"tasks": {"arc_easy": {"metric": "acc", "value": 0.31}, "mqar": {"metric": "acc", "value": 0.4}},
              "average": 0.31, "recall": 0.4})
    outcome = await handle_analyse({"id": "a1", "experiment": child["index"]}, api_client, llm=None, judge=None)
    stored = await api_client.get_experiment(child["index"])
    assert stored["status"] == "analysed" and stored["analysis"]["judge_score"] is None
    assert "improves on" in stored["analysis"]["summary"] and "Expectation vs reality" in stored["analysis"]["text"]
    assert outcome.result["fitness"] == stored["fitness"] and stored["fitness"] > 0.5
    assert stored["fitness_parts"]["judge"] is None


async def test_llm_judge_score_enters_the_fitness(api_client):
    seed = await make_baseline(api_client)
    await handle_analyse({"id": "a0", "experiment": seed["index"]}, api_client, llm=None, judge=None)
    child = await api_client.create_experiment(name="child", program=seed_program(), parent=seed["index"],
                                               motivation="A child that should improve the loss of its parent.")
    await api_client.update_experiment(child["index"], status="evaluated",
                                       train={"loss_curve": [], "val_loss": 5.0, "tokens_per_s": 1000.0},
                                       eval={"tasks": {}, "average": 0.30, "recall": 0.20})
    judge = CannedLLM([json.dumps({"score": 0.9, "rationale": "sound"})])
    await handle_analyse({"id": "a1", "experiment": child["index"]}, api_client, llm=None, judge=judge)
    stored = await api_client.get_experiment(child["index"])
    assert stored["analysis"]["judge_score"] == 0.9 and stored["fitness_parts"]["judge"] == pytest.approx(0.9)


async def test_a_spent_llm_budget_still_scores_the_candidate_as_offline(api_client):
    seed = await make_baseline(api_client)
    await handle_analyse({"id": "a0", "experiment": seed["index"]}, api_client, llm=None, judge=None)
    child = await api_client.create_experiment(name="child", program=seed_program(), parent=seed["index"],
                                               motivation="A child that should improve the loss of its parent.")
    await api_client.update_experiment(child["index"], status="evaluated",
                                       train={"loss_curve": [], "val_loss": 4.9, "tokens_per_s": 1000.0},
                                       eval={"tasks": {}, "average": 0.30, "recall": 0.20})
    spent = ScriptedLLM([BudgetExceeded("3 calls of at most 3")])
    await handle_analyse({"id": "a1", "experiment": child["index"]}, api_client, llm=spent, judge=spent)
    stored = await api_client.get_experiment(child["index"])
    assert stored["status"] == "analysed" and stored["fitness"] is not None
    assert stored["analysis"]["judge_score"] is None and "without an LLM" in stored["analysis"]["explanation"]


def test_measured_deltas_are_signed_so_that_positive_is_better():
    base = {"index": 1, "train": {"val_loss": 5.0, "tokens_per_s": 100}, "eval": {
        "tasks": {"ppl": {"metric": "word_perplexity", "value": 50.0}, "acc": {"metric": "acc", "value": 0.5}},
        "average": 0.5, "recall": 0.2}}
    child = {"index": 2, "train": {"val_loss": 4.5, "tokens_per_s": 50}, "eval": {
        "tasks": {"ppl": {"metric": "word_perplexity", "value": 40.0}, "acc": {"metric": "acc", "value": 0.4}},
        "average": 0.4, "recall": 0.3}}
    numbers = measured_deltas(child, base)
    assert numbers["loss_improvement"] == pytest.approx(0.1) and numbers["speed_ratio"] == 0.5
    assert numbers["task_deltas"] == {"ppl": 10.0, "acc": -0.1} and numbers["recall_delta"] == 0.1


def test_cognition_entries_and_the_published_importer(shared_dir):
    assert len(ENTRIES) >= 10 and all(e["title"] and len(e["text"]) > 200 for e in ENTRIES)
    published = import_published(shared_dir / "asi-arch" / "cognition.json")
    assert len(published) > 98 and all(e["source"] and "DESIGN_INSIGHT" in e for e in published[:20])


async def test_cognition_is_searchable_through_the_api(api_client):
    from agent.cognition import ensure_cognition

    first, second = await ensure_cognition(api_client), await ensure_cognition(api_client)
    assert first["added"] == len(ENTRIES) and second["added"] == 0
    hits = await api_client.search_cognition("forget gate decay to clear stale memory", k=2)
    assert any("Gated DeltaNet" in h["title"] for h in hits)
