"""Realistic documents for the dashboard's browser tests, written through the API as the workers write them.

`seed_finished` leaves a finished run (a baseline, scored children, one candidate the checks rejected,
every job done); `seed_running` a run in progress (a job leased by a trainer, queued jobs, a retried job).
The shapes follow what the engineer, trainer, evaluator and analyst store (database/schemas.py).
"""

from __future__ import annotations

import httpx

from tests.conftest import TEST_TOKEN
from trainer.layers import seed_program

TASKS = {"arc_easy": "acc", "hellaswag": "acc_norm", "piqa": "acc", "recall_mqar": "acc", "recall_kv": "acc"}
SEEDS = [0, 1, 2]
STEPS = 240


def stats(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return {"mean": mean, "se": (var / len(values)) ** 0.5, "per_seed": values, "n": len(values)}


def curve(final: float, every: int, wiggle: float = 0.0) -> list[list[float]]:
    return [[step, round(final + 2.5 * (1 - step / STEPS) ** 2 + wiggle, 4)] for step in range(0, STEPS + 1, every)]


def train_doc(final: float, spread: float = 0.02, speed: float = 5600.0) -> dict:
    finals = [final - spread, final, final + spread]
    return {"loss_curve": curve(final + 0.05, 10), "val_curve": curve(final, 60), "val_loss": final,
            "val_curves": [curve(f, 60, f - final) for f in finals], "val_loss_stats": stats(finals),
            "val_loss_start": final + 2.5, "tokens_per_s": speed, "tokens_per_s_stats": stats([speed - 50, speed, speed + 50]),
            "params": 247872, "non_embedding_params": 116800, "mixer_params_per_layer": 21376, "device": "cpu",
            "backend": "cpu", "peak_memory_mb": 741.35, "steps_done": STEPS, "seeds": SEEDS, "wall_s": 280.0,
            "train_s": 259.6, "gpu_s": 0.0, "cpu_s": 130.1, "tokens": 1474560.0}


def eval_doc(level: float) -> dict:
    tasks = {}
    for number, (task, metric) in enumerate(TASKS.items()):
        values = [round(level + 0.02 * number + d, 4) for d in (-0.01, 0.0, 0.01)]
        tasks[task] = {"metric": metric, "value": sum(values) / 3, "stderr": 0.04, "metrics": {metric: values[0]},
                       "stats": stats(values)}
    average = sum(t["value"] for t in tasks.values()) / len(tasks)
    recall = (tasks["recall_mqar"]["value"] + tasks["recall_kv"]["value"]) / 2
    return {"tier": "smoke", "limit": None, "wall_s": 19.4, "seeds": 3, "tasks": tasks, "average": average,
            "average_stats": stats([average - 0.005, average, average + 0.005]), "recall": recall,
            "recall_stats": stats([recall - 0.003, recall, recall + 0.003]),
            "benchmark_stats": stats([(average + recall) / 2 - 0.004, (average + recall) / 2, (average + recall) / 2 + 0.004]),
            "perplexity": None}


def check_doc(ok: bool = True, failing: str | None = None) -> dict:
    names = ["load", "construct", "params", "forward", "finite", "causality", "cost_growth"]
    checks = [{"name": n, "ok": n != failing, "hard": n != "cost_growth",
               "detail": "earlier outputs changed when later tokens changed" if n == failing else f"{n} passed"}
              for n in names]
    return {"ok": ok, "checks": checks, "failed": [failing] if failing else [], "flagged": [], "warnings": [],
            "params_per_layer": 21376, "seconds": 3.7, "fidelity": "smoke", "reason": None if ok else f"{failing} failed"}


class Seeder:
    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TEST_TOKEN}"}, timeout=30)

    def call(self, method: str, path: str, **kwargs):
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def experiment(self, name: str, program: str, **fields) -> dict:
        return self.call("POST", "/experiments", json={"name": name, "program": program, "fidelity": "smoke", **fields})

    def job(self, kind: str, experiment: int | None, worker: str, outcome: str = "complete") -> dict:
        """Create a job and take it through a worker: 'complete', 'fail' (final), 'retry' (re-queued), 'lease'."""
        job = self.call("POST", "/jobs", json={"kind": kind, "experiment": experiment, "payload": {"fidelity": "smoke"}})
        if outcome == "queue":
            return job
        leased = self.call("POST", "/jobs/lease", json={"kinds": [kind], "worker": worker})
        assert leased["id"] == job["id"], "another queued job of this kind was older"
        if outcome == "complete":
            return self.call("POST", f"/jobs/{job['id']}/complete", json={"worker": worker, "result": {"experiment": experiment}})
        if outcome in ("fail", "retry"):
            reason = "lease expired: the worker sent no heartbeat" if outcome == "retry" else "causality check failed"
            return self.call("POST", f"/jobs/{job['id']}/fail", json={"worker": worker, "reason": reason,
                                                                     "retry": outcome == "retry"})
        return leased

    def trained(self, index: int, loss: float, level: float, analysis: str, tokens: int = 0) -> dict:
        """Every stage's results of a candidate that went all the way, with its jobs, then its fitness."""
        for kind in ("engineer", "train", "evaluate", "analyse"):
            self.job(kind, index, f"{kind}-worker-1")
        self.call("PATCH", f"/experiments/{index}", json={
            "check": check_doc(), "train": train_doc(loss), "eval": eval_doc(level), "status": "evaluated",
            "costs": {"cpu_seconds": 3.7 + 130.1 + 25.0, "gpu_seconds": 0.0, "llm_tokens": tokens}})
        self.call("PATCH", f"/experiments/{index}", json={"analysis": {
            "summary": analysis, "design_evaluation": "Design: the change is small and local.",
            "results": f"Validation loss {loss}.", "explanation": "Computed from the numbers.", "judge_score": None}})
        return self.call("POST", f"/experiments/{index}/score", json={})


def variant(program: str, old: str, new: str, extra: str) -> str:
    """The program with one line replaced and one added after it: a diff of exactly 2 added, 1 removed."""
    assert program.count(old) == 1, old
    return program.replace(old, f"{new}\n{extra}")


def seed_finished(url: str) -> dict:
    s = Seeder(url)
    seed = seed_program()
    s.call("PUT", "/calibrations/smoke", json={"fidelity": "smoke", "seeds": 3, "spearman_expected": 0.81,
                                               "spearman_seeds": 0.89, "spearman_rungs": {}, "earned": True, "programs": {}})
    base = s.experiment("seed-deltanet-smoke", seed, origin="seed", is_baseline=True,
                        motivation="The seed DeltaNet, the reference every candidate is measured against.")
    s.trained(base["index"], 5.20, 0.30, "Baseline: the seed DeltaNet.")
    wide = s.experiment("wide-heads", variant(seed, "num_heads: int = 4,", "num_heads: int = 2,", "        # wider heads"),
                        parent=base["index"], motivation="Fewer, wider heads give each head a larger memory.")
    s.trained(wide["index"], 4.90, 0.36, "wide-heads beats the baseline: loss +5.8%.", tokens=1834)
    conv = s.experiment("long-conv", variant(seed, "conv_size: int = 4,", "conv_size: int = 8,", "        # longer"),
                        parent=wide["index"], motivation="A longer short convolution mixes more local context.")
    s.trained(conv["index"], 5.35, 0.29, "long-conv falls behind the baseline.", tokens=1502)
    leak = s.experiment("sequence-mean", seed + "\n# o = o.mean(dim=1, keepdim=True)\n", parent=base["index"],
                        motivation="Mix in the sequence mean as global context.")
    s.job("engineer", leak["index"], "engineer-worker-1", outcome="fail")
    s.call("PATCH", f"/experiments/{leak['index']}", json={"check": check_doc(False, "causality"),
                                                           "costs": {"cpu_seconds": 2.1, "llm_tokens": 977}})
    return {"baseline": base["index"], "best": wide["index"], "worse": conv["index"], "failed": leak["index"]}


def seed_running(url: str) -> dict:
    s = Seeder(url)
    seed = seed_program()
    base = s.experiment("seed-deltanet-smoke", seed, origin="seed", is_baseline=True)
    s.trained(base["index"], 5.20, 0.30, "Baseline: the seed DeltaNet.")
    training = s.experiment("no-output-gate", variant(seed, "use_gate: bool = True,", "use_gate: bool = False,", "        # no gate"),
                            parent=base["index"], motivation="Without the output gate: is it worth its parameters?")
    s.job("engineer", training["index"], "engineer-worker-1")
    s.call("PATCH", f"/experiments/{training['index']}", json={"check": check_doc(), "status": "checked",
                                                               "costs": {"cpu_seconds": 3.7, "llm_tokens": 1200}})
    leased = s.job("train", training["index"], "trainer-gpu0", outcome="lease")
    waiting = s.experiment("short-decay", seed + "\n# decay\n", parent=base["index"], motivation="Decay the state.")
    retried = s.job("engineer", waiting["index"], "engineer-worker-2", outcome="retry")
    research = s.job("research", None, "", outcome="queue")
    return {"baseline": base["index"], "training": training["index"], "waiting": waiting["index"],
            "leased_job": leased["id"], "retried_job": retried["id"], "research_job": research["id"]}
