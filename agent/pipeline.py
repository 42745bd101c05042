"""Evolution cycles, end to end.

    python -m agent.pipeline                         # embedded: CPU, offline, smoke fidelity, 2 experiments
    python -m agent.pipeline --experiments 10 --fidelity explore --api http://gpu-box:8000 --token $API_TOKEN
    python -m agent.pipeline --resume                # continue the run in RUN_DIR

With no `--api`, it starts the candidate API (with its embedded database) and one worker per role
as child processes, all on this machine. If the pool has no baseline for the fidelity, it first
checks, trains, evaluates and analyses the seed DeltaNet. Then it keeps `--parallel` research
chains in flight until `--experiments` new experiments have a fitness (or three times as many
were tried). It prints progress as stages finish, a results table at the end, and writes plots to
`RUN_DIR/plots/`. Ctrl-C stops it: workers hand their jobs back and `--resume` goes on from there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.cluster import LocalCluster
from agent.cognition import ensure_cognition
from agent.report import results_table, write_plots
from database.client import ApiClient
from trainer.fidelity import parse_overrides

log = logging.getLogger("pipeline")
TERMINAL = {"succeeded", "failed"}
# Lease length of every job of a chain: how long a silent (killed) worker holds a job before another
# takes it. Workers heartbeat every third of it; how long work may take is each stage's own limit.
LEASE_S = 60.0


@dataclass
class RunState:
    """What this run submitted, saved in RUN_DIR/pipeline.json so that `--resume` can go on."""

    path: Path
    fidelity: str = "smoke"
    baseline_root: str | None = None
    roots: list[str] = field(default_factory=list)
    # This session's chains are roots[session_start:]; it aims at `target` scored experiments.
    session_start: int = 0
    target: int = 0

    @classmethod
    def load(cls, path: Path, fidelity: str) -> RunState:
        if path.exists():
            data = json.loads(path.read_text())
            return cls(path, **{k: v for k, v in data.items() if k != "path"})
        return cls(path, fidelity)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fields = {"fidelity": self.fidelity, "baseline_root": self.baseline_root, "roots": self.roots,
                  "session_start": self.session_start, "target": self.target}
        tmp.write_text(json.dumps(fields, indent=1))
        tmp.replace(self.path)


class Follower:
    """Polls job chains and prints a line whenever a stage starts, finishes or fails."""

    def __init__(self, client: ApiClient, started: float):
        self.client, self.started, self.seen = client, started, {}

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)

    async def chain(self, root: str) -> tuple[bool, int | None]:
        """(finished, experiment index) of the chain started by job `root`."""
        jobs = (await self.client.list_jobs(root=root, limit=1000))["data"]
        experiment = None
        for job in jobs:
            experiment = job.get("experiment") or (job.get("result") or {}).get("experiment") or experiment
            key = (job["id"], job["status"], job["attempts"])
            if key not in self.seen:
                self.seen[key] = True
                if job["status"] != "queued" or job["attempts"]:
                    where = f"#{experiment}" if experiment else "new"
                    detail = f": {job['error'].splitlines()[0][:160]}" if job["status"] == "failed" and job.get("error") else ""
                    self.say(f"{where:>5} {job['kind']:<9} {job['status']}{detail}")
        finished = bool(jobs) and all(job["status"] in TERMINAL for job in jobs)
        return finished, experiment


async def submit_chain(client: ApiClient, kind: str, experiment: int | None, payload: dict) -> str:
    lease = float(payload.get("lease_s", LEASE_S))
    job = await client.create_job(kind=kind, experiment=experiment, payload=payload, max_attempts=3, timeout=lease)
    return job["id"]


async def ensure_baseline(client: ApiClient, state: RunState, follower: Follower, payload: dict) -> dict:
    from trainer.layers import seed_program

    baseline = await client.baseline(state.fidelity)
    if baseline and baseline.get("status") == "analysed":
        return baseline
    if baseline is None:
        follower.say(f"no baseline at fidelity {state.fidelity!r}: checking, training and evaluating the seed")
        seed = await client.create_experiment(
            name=f"seed-deltanet-{state.fidelity}", program=seed_program(), origin="seed", is_baseline=True,
            fidelity=state.fidelity, motivation="The seed DeltaNet: the baseline every candidate is measured against.",
        )
        state.baseline_root = await submit_chain(client, "engineer", seed["index"], payload)
        state.save()
    elif state.baseline_root is None:
        raise SystemExit(f"baseline #{baseline['index']} exists but is {baseline['status']!r} and this run did not "
                         "start it; wait for it or use another RUN_DIR")
    while True:
        finished, _ = await follower.chain(state.baseline_root)
        if finished:
            break
        await asyncio.sleep(1.0)
    baseline = await client.baseline(state.fidelity)
    if not baseline or baseline.get("status") != "analysed":
        reason = (baseline or {}).get("failure")
        raise SystemExit(f"the seed baseline did not complete: {reason}")
    return baseline


async def evolve(client: ApiClient, state: RunState, parallel: int, seed: int, extra: dict | None = None) -> list[dict]:
    started = time.monotonic()
    follower = Follower(client, started)
    payload = {"fidelity": state.fidelity, "seed": seed, **(extra or {})}
    experiments = state.target
    await ensure_cognition(client)
    baseline = await ensure_baseline(client, state, follower, payload)
    follower.say(f"baseline #{baseline['index']}: val loss {baseline['train']['val_loss']:.4f}, "
                 f"fitness {baseline['fitness']:.3f}")
    max_tries = 3 * experiments
    results: dict[str, int | None] = {}
    while True:
        scored, running = 0, 0
        for root in state.roots[state.session_start:]:
            finished, index = await follower.chain(root)
            results[root] = index
            if not finished:
                running += 1
            elif index is not None and (await client.get_experiment(index)).get("fitness") is not None:
                scored += 1
        tries = len(state.roots) - state.session_start
        if scored >= experiments or (tries >= max_tries and running == 0):
            break
        while running < parallel and scored + running < experiments and tries < max_tries:
            tries += 1
            root = await submit_chain(client, "research", None, {**payload, "proposal_seed": seed + len(state.roots)})
            state.roots.append(root)
            state.save()
            running += 1
        await asyncio.sleep(1.0)
    follower.say(f"done: {scored} of {experiments} experiments scored after {tries} tries")
    indexes = [baseline["index"], *[i for i in results.values() if i is not None]]
    return [await client.get_experiment(i) for i in indexes]


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    state = RunState.load(run_dir / "pipeline.json", args.fidelity)
    if args.resume and not state.path.exists():
        raise SystemExit(f"nothing to resume: {state.path} does not exist")
    if not args.resume:
        # A new session in the same run directory: reuse its database and baseline, add experiments.
        state.fidelity, state.session_start, state.target = args.fidelity, len(state.roots), args.experiments
        state.save()
    cluster = None
    url, token = args.api, args.token
    if url is None:
        print(f"starting the candidate API and workers (logs in {run_dir / 'logs'})", flush=True)
        cluster = LocalCluster(run_dir).start()
        url, token = cluster.url, cluster.token
    wall = time.monotonic()
    try:
        async with ApiClient(url, token) as client:
            extra = {"lease_s": args.lease_s}
            if args.set:
                extra["overrides"] = parse_overrides(args.set)
            rows = await evolve(client, state, args.parallel, args.seed, extra)
            tree = await client.tree()
        print(results_table(rows))
        plots = write_plots(rows, tree, run_dir / "plots")
        print(f"plots: {', '.join(str(p) for p in plots)}")
        print(f"wall time {time.monotonic() - wall:.0f}s; run directory {run_dir}")
        return 0
    finally:
        if cluster is not None:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=2, help="new experiments to score (default 2)")
    parser.add_argument("--fidelity", default="smoke", choices=["smoke", "explore", "verify"])
    parser.add_argument("--parallel", type=int, default=1, help="research chains in flight at once")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed of every experiment, the baseline's too (common random numbers make "
                             "their comparison fairer); research chains draw their own seeds from it")
    parser.add_argument("--run-dir", default=os.environ.get("RUN_DIR", "runs/default"))
    parser.add_argument("--api", default=None, help="URL of a deployed candidate API (default: start one here)")
    parser.add_argument("--token", default=os.environ.get("API_TOKEN"))
    parser.add_argument("--resume", action="store_true", help="continue the run recorded in RUN_DIR")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override fidelity fields for every experiment, e.g. --set steps=100")
    parser.add_argument("--lease-s", type=float, default=LEASE_S,
                        help="how long a silent worker holds a job before another takes it over")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\nstopped: every job is back in the queue or done; continue with --resume", flush=True)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
