"""Prompts of the agents. Kept in one place so that their wording can be read and tuned together."""

from __future__ import annotations

import json

CONTRACT = """A candidate is one Python file defining `class DeltaNet(nn.Module)`:
- constructed with keyword arguments including hidden_size, num_heads, layer_idx, norm_eps and **kwargs;
- forward(hidden_states [B, T, D], attention_mask=None, past_key_values=None, use_cache=False,
  output_attentions=False, **kwargs) -> (o [B, T, D], None, past_key_values);
- it may import torch, einops, math and fla (fla.modules: ShortConvolution, RMSNorm, FusedRMSNormGated;
  fla.modules.l2norm: l2norm; fla.layers.utils: get_unpad_data, index_first_axis, pad_input;
  fla.ops.delta_rule: chunk_delta_rule; fla.ops.gated_delta_rule: chunk_gated_delta_rule).
Constraints, checked by running the program: strictly causal (output at t depends only on tokens <= t);
sub-quadratic (chunkwise or recurrent, no T x T attention matrix over the whole sequence); batch independent
(no mixing across the batch dimension); works for any length, including lengths that are not a multiple
of a chunk size; finite outputs and gradients; parameters per layer within the budget. No file, network or
process access."""


def _curve(train: dict | None) -> str:
    if not train:
        return "not trained"
    curve = train.get("loss_curve") or []
    points = ", ".join(f"{int(s)}:{loss:.3f}" for s, loss in curve[:: max(1, len(curve) // 8)] if loss is not None)
    return (f"validation loss {train.get('val_loss_start', float('nan')):.3f} -> {train.get('val_loss') or 0:.3f}; "
            f"training loss by step {points}; {train.get('tokens_per_s', 0):.0f} tokens/s; "
            f"{train.get('non_embedding_params', 0)} non-embedding parameters")


def _scores(evaluation: dict | None) -> str:
    if not evaluation:
        return "not evaluated"
    tasks = ", ".join(f"{name} {score.get('value', 0):.3f}" for name, score in (evaluation.get("tasks") or {}).items())
    return f"benchmark average {evaluation.get('average')}, recall {evaluation.get('recall')}; {tasks}"


def describe(experiment: dict, with_program: bool = False) -> str:
    analysis = (experiment.get("analysis") or {}).get("summary") or "none yet"
    text = (f"#{experiment['index']} {experiment['name']} (fitness {experiment.get('fitness')})\n"
            f"Motivation: {experiment.get('motivation', '')[:1500]}\n"
            f"Training: {_curve(experiment.get('train'))}\nEvaluation: {_scores(experiment.get('eval'))}\n"
            f"Analysis summary: {analysis}")
    if with_program:
        text += f"\nProgram:\n```python\n{experiment['program']}\n```"
    return text


def cognition_query(parent: dict) -> str:
    return ((parent.get("analysis") or {}).get("summary") or parent.get("motivation") or parent["name"])[:2000]


def research_messages(parent: dict, references: list[dict], cognition: list[dict], fidelity: str) -> list[dict]:
    notes = "\n\n".join(f"[{c.get('title') or c.get('source')}] {(c.get('text') or c.get('DESIGN_INSIGHT') or '')[:1200]}"
                        for c in cognition) or "none"
    others = "\n\n".join(describe(r) for r in references) or "none"
    system = ("You are a researcher designing new token-mixing layers for linear-attention language models. "
              "Each proposal is trained and benchmarked against the seed DeltaNet at the same budget.\n\n" + CONTRACT)
    user = (f"Fidelity: {fidelity}.\n\nParent to improve:\n{describe(parent, with_program=True)}\n\n"
            f"Other strong candidates:\n{others}\n\nResearch notes:\n{notes}\n\n"
            "Propose ONE new architecture that addresses a weakness the results show. Answer with JSON: "
            '{"name": "...", "motivation": "...", "program": "full file" or null, '
            '"edits": [{"search": "exact parent text", "replace": "new text"}] or null}.')
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def followup(previous, problem: str) -> list[dict]:
    return [{"role": "assistant", "content": previous.model_dump_json()}, {"role": "user", "content": problem}]


def novelty_messages(motivation: str, similar: str) -> list[dict]:
    return [{"role": "system", "content": "You judge whether a research idea repeats earlier ones."},
            {"role": "user", "content": f"New idea:\n{motivation}\n\nEarlier ideas:\n{similar}\n\n"
                                        'Is the new idea essentially the same as one of them? JSON: '
                                        '{"duplicate": true|false, "reason": "..."}'}]


def debug_messages(program: str, motivation: str, error: str) -> list[dict]:
    return [{"role": "system", "content": "You fix layer programs with the smallest change that removes the error, "
                                          "keeping the design's idea.\n\n" + CONTRACT},
            {"role": "user", "content": f"Motivation:\n{motivation}\n\nProgram:\n```python\n{program}\n```\n\n"
                                        f"Error:\n{error[-3000:]}\n\nReturn JSON: "
                                        '{"program": "the full fixed file", "explanation": "what you changed"}'}]


def judge_messages(experiment: dict, baseline: dict) -> list[dict]:
    rubric = ("Score 0 to 1. 0.5 means as good as the baseline design. Judge: soundness of the idea, whether the "
              "results support it (loss and benchmark deltas vs the baseline), efficiency (speed, parameters), and "
              "novelty relative to the baseline. 0.8+ only for a clear, well-motivated improvement.")
    return [{"role": "system", "content": "You review architecture experiments. " + rubric},
            {"role": "user", "content": f"Baseline:\n{describe(baseline)}\n\nCandidate:\n{describe(experiment)}\n\n"
                                        'JSON: {"score": 0.0-1.0, "rationale": "..."}'}]


def analysis_messages(experiment: dict, baseline: dict, parent: dict | None, numbers: dict) -> list[dict]:
    return [{"role": "system", "content": "You analyse architecture experiments for a research log."},
            {"role": "user", "content": f"Baseline:\n{describe(baseline)}\n\nParent:\n"
                                        f"{describe(parent) if parent else 'none'}\n\nExperiment:\n"
                                        f"{describe(experiment, with_program=True)}\n\nMeasured deltas:\n"
                                        f"{json.dumps(numbers, indent=1)}\n\nWrite the analysis in five parts "
                                        "(design evaluation, results, expectation vs reality, explanation, "
                                        "synthesis) and a two-sentence experience summary. JSON: "
                                        '{"design_evaluation": "...", "results": "...", "expectation_vs_reality": '
                                        '"...", "explanation": "...", "synthesis": "...", "summary": "..."}'}]
