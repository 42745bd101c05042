"""Evolution cycles, end to end.

    python -m agent.pipeline                         # embedded: CPU, offline, ladder synthetic,smoke, 2 experiments
    python -m agent.pipeline --experiments 10 --ladder synthetic,explore,verify --api http://gpu-box:8000 \
        --token $API_TOKEN
    python -m agent.pipeline --fidelity smoke        # one rung only
    python -m agent.pipeline --resume                # continue the run in RUN_DIR
    python -m agent.pipeline --program my_layer.py   # also run a hand-written program (repeatable)

With no `--api`, it starts the candidate API (with its embedded database) and one worker per role
as child processes, all on this machine. For each rung of the ladder without a baseline, it first
checks, trains, evaluates and analyses the seed DeltaNet there, with the rung's seeds. Then it keeps
`--parallel` research chains in flight on the first rung until `--experiments` new experiments have
a fitness (or three times as many were tried), re-running an elite with fresh seeds before it
parents more than `--reevaluate-after` children, and promotes the best of each rung to the next
(see agent.ladder). It prints progress as stages finish, a results table with mean ± SE at the end,
and writes plots to `RUN_DIR/plots/`. Ctrl-C stops it: workers hand their jobs back and `--resume`
goes on from there. Each `--program FILE` joins the run as a candidate of origin `human` (its module
docstring, when it has one, is its motivation) and goes through the same stages as the researcher's.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.cluster import LocalCluster, stop_on_sigterm
from agent.cognition import ensure_cognition
from agent.follower import Follower, wait_for
from agent.ladder import (
    DEFAULT_LADDER,
    SHIPPED_CALIBRATIONS,
    calibration_warnings,
    local_calibrations,
    parse_ladder,
    promote,
    promotion_count,
    rung_overrides,
    rung_weight,
    select_for_promotion,
)
from agent.report import pm, results_table, standings, write_plots
from agent.runfiles import fetch_run, write_export
from database.client import ApiClient, ApiError
from trainer.cli import Parser, fidelity_name, guard, key_value, non_negative_int, positive_int
from trainer.fidelity import FIDELITIES, parse_overrides
from trainer.job_limits import worker_env

log = logging.getLogger("pipeline")
# Lease length of every job of a chain: how long a silent (killed) worker holds a job before another
# takes it. Workers heartbeat every third of it; how long work may take is each stage's own limit.
LEASE_S = 60.0


@dataclass
class RunState:
    """What this run submitted, saved in RUN_DIR/pipeline.json so that `--resume` can go on."""

    path: Path
    ladder: list[str] = field(default_factory=lambda: list(DEFAULT_LADDER))
    baseline_roots: dict[str, str] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    # Chains of promoted copies and of elite re-evaluations: (rung or "reevaluate", job id).
    followups: list[list[str]] = field(default_factory=list)
    reevaluated: list[int] = field(default_factory=list)
    # This session's chains are roots[session_start:]; it aims at `target` scored experiments.
    session_start: int = 0
    target: int = 0

    @property
    def fidelity(self) -> str:
        return self.ladder[0]

    @classmethod
    def load(cls, path: Path, ladder: list[str]) -> RunState:
        if path.exists():
            data = json.loads(path.read_text())
            if "fidelity" in data:  # a run directory written before ladders
                data["ladder"] = [data.pop("fidelity")]
                root = data.pop("baseline_root", None)
                data["baseline_roots"] = {data["ladder"][0]: root} if root else {}
            names = {f for f in cls.__dataclass_fields__ if f != "path"}
            return cls(path, **{k: v for k, v in data.items() if k in names})
        return cls(path, list(ladder))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "path"}
        tmp.write_text(json.dumps(fields, indent=1))
        tmp.replace(self.path)


async def submit_chain(client: ApiClient, kind: str, experiment: int | None, payload: dict) -> str:
    lease = float(payload.get("lease_s", LEASE_S))
    job = await client.create_job(kind=kind, experiment=experiment, payload=payload, max_attempts=3, timeout=lease)
    return job["id"]


async def ensure_baseline(client: ApiClient, state: RunState, follower: Follower, rung: str, payload: dict) -> dict:
    from trainer.layers import seed_program

    baseline = await client.baseline(rung)
    if baseline and baseline.get("status") == "analysed":
        return baseline
    root = state.baseline_roots.get(rung)
    if baseline is None:
        follower.say(f"no baseline at fidelity {rung!r}: checking, training and evaluating the seed")
        seed = await client.create_experiment(
            name=f"seed-deltanet-{rung}", program=seed_program(), origin="seed", is_baseline=True, fidelity=rung,
            motivation="The seed DeltaNet: the baseline every candidate is measured against.",
        )
        root = state.baseline_roots[rung] = await submit_chain(client, "engineer", seed["index"], payload)
        state.save()
    elif root is None:
        raise SystemExit(f"baseline #{baseline['index']} exists but is {baseline['status']!r} and this run did not "
                         "start it; wait for it or use another RUN_DIR")
    await wait_for(follower, [root])
    baseline = await client.baseline(rung)
    if not baseline or baseline.get("status") != "analysed":
        reason = ((baseline or {}).get("failure") or {}).get("reason", "no reason recorded")
        raise SystemExit(f"the seed baseline at {rung!r} did not complete: {reason}")
    return baseline


async def reevaluate_elites(client: ApiClient, state: RunState, payload: dict, after: int) -> None:
    """Re-train, with fresh seeds, each pool member about to parent more than `after` children."""
    for entry in await client.candidates(k=10, fidelity=state.fidelity):
        index = entry["index"]
        if index in state.reevaluated or len(await client.children(index)) < after:
            continue
        experiment = await client.get_experiment(index)
        if experiment.get("is_baseline"):
            continue
        seeds = [int(s) + 1000 for s in (experiment.get("train") or {}).get("seeds") or [payload.get("seed", 0)]]
        root = await submit_chain(client, "train", index, {**payload, "seeds": seeds, "reevaluation": True})
        state.reevaluated.append(index)
        state.followups.append(["reevaluate", root])
        state.save()


async def climb(client: ApiClient, state: RunState, follower: Follower, payloads: dict[str, dict],
                scored: list[dict], fraction: float, minimum: int) -> list[dict]:
    """Promote the best of each rung to the next; returns every promoted copy, rung by rung."""
    promoted_all, current = [], scored
    for rung in state.ladder[1:]:
        chosen = select_for_promotion(current, fraction, minimum)
        if not chosen:
            break
        await ensure_baseline(client, state, follower, rung, payloads[rung])
        roots = []
        for experiment in chosen:
            copy = await promote(client, experiment, rung)
            follower.say(f"#{experiment['index']} promoted to {rung} as #{copy['index']}")
            known = {root for kind, root in state.followups if kind == rung}
            jobs = (await client.list_jobs(experiment=copy["index"], limit=10))["data"]
            root = next((j["id"] for j in jobs if j["id"] in known), None)
            if root is None:
                root = await submit_chain(client, "engineer", copy["index"], payloads[rung])
                state.followups.append([rung, root])
                state.save()
            roots.append(root)
        await wait_for(follower, roots)
        current = [await client.get_experiment(c["index"]) for c in
                   [await promote(client, e, rung) for e in chosen]]
        promoted_all += current
    return promoted_all


def read_program(path: str) -> tuple[str, str]:
    """(file stem, text) of a hand-written program; SystemExit with one line naming the file when unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"pipeline: --program {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"pipeline: --program {path}: cannot be read: {getattr(err, 'strerror', None) or err}") from None
    if not text.strip():
        raise SystemExit(f"pipeline: --program {path}: the file is empty")
    return Path(path).stem, text


async def submit_programs(client: ApiClient, state: RunState, follower: Follower,
                          programs: list[tuple[str, str]]) -> None:
    """Hand-written programs join the run beside the researcher's proposals (origin `human`)."""
    for stem, program in programs:
        try:
            motivation = ast.get_docstring(ast.parse(program))
        except (SyntaxError, ValueError):
            motivation = None  # the engineer's checks will say what is wrong with it
        fields = {"program": program, "fidelity": state.fidelity, "actor": "pipeline",
                  "motivation": motivation or f"A hand-written program from {stem}.py."}
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:100]
        try:
            experiment = await client.submit_program(name=name or None, **fields)
        except ApiError as err:
            if err.status != 409:
                raise
            experiment = await client.submit_program(**fields)  # the name is taken: the API picks one
        jobs = (await client.list_jobs(experiment=experiment["index"], kind="engineer", limit=10))["data"]
        state.followups.append(["program", jobs[0]["id"]])
        state.save()
        follower.say(f"#{experiment['index']} {experiment['name']}: submitted by hand from {stem}")


async def evolve(client: ApiClient, state: RunState, options: argparse.Namespace,
                 payloads: dict[str, dict]) -> list[dict]:
    started = time.monotonic()
    follower = Follower(client, started)
    payload = payloads[state.fidelity]
    experiments = state.target
    await ensure_cognition(client)
    calibrations = await client.calibrations()
    for line in calibration_warnings(state.ladder, calibrations):
        follower.say(f"warning: {line}")
    baseline = await ensure_baseline(client, state, follower, state.fidelity, payload)
    follower.say(f"baseline #{baseline['index']} at {state.fidelity}: val loss {pm(baseline['train'], 'val_loss')}, "
                 f"fitness {baseline['fitness']:.3f}")
    await submit_programs(client, state, follower, getattr(options, "programs", []))
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
        while running < options.parallel and scored + running < experiments and tries < max_tries:
            await reevaluate_elites(client, state, payload, options.reevaluate_after)
            tries += 1
            root = await submit_chain(client, "research", None,
                                      {**payload, "proposal_seed": options.seed + len(state.roots)})
            state.roots.append(root)
            state.save()
            running += 1
        await asyncio.sleep(1.0)
    await wait_for(follower, [root for kind, root in state.followups if kind in ("reevaluate", "program")])
    follower.say(f"done: {scored} of {experiments} experiments scored after {tries} tries")
    by_hand = [(await follower.chain(root))[1] for kind, root in state.followups if kind == "program"]
    indexes = [baseline["index"], *[i for i in [*results.values(), *by_hand] if i is not None]]
    rows = [await client.get_experiment(i) for i in indexes]
    promoted = await climb(client, state, follower, payloads, rows, options.promote, options.promote_min)
    baselines = [await client.baseline(rung) for rung in state.ladder[1:]]
    return rows + [b for b in baselines if b] + promoted


async def upload_calibrations(client: ApiClient, folder: Path) -> None:
    """Calibrations that `agent.calibrate` wrote into the run directory reach the API the workers share; for a
    rung with none anywhere, the one measured for the project (trainer/panel/calibrations/) stands in."""
    for record in local_calibrations(folder):
        await client.put_calibration(record)
    known = await client.calibrations()
    for record in local_calibrations(SHIPPED_CALIBRATIONS):
        if record["fidelity"] not in known:
            await client.put_calibration({**record, "shipped": True})


async def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    state = RunState.load(run_dir / "pipeline.json", args.ladder)
    if args.resume and not state.path.exists():
        raise SystemExit(f"nothing to resume: {state.path} does not exist")
    if not args.resume:
        # A new session in the same run directory: reuse its database and baselines, add experiments.
        state.ladder, state.session_start, state.target = args.ladder, len(state.roots), args.experiments
        state.save()
    cluster = None
    url, token = args.api, args.token
    if url is None:
        print(f"starting the candidate API and workers (logs in {run_dir / 'logs'})", flush=True)
        cluster = LocalCluster(run_dir, env=worker_env(args.overrides, run_dir)).start()
        url, token = cluster.url, cluster.token
    # The API serves the dashboard; it is live for as long as the API runs (here: until the run ends).
    print(f"dashboard: {url.rstrip('/')}/ui", flush=True)
    wall = time.monotonic()
    try:
        async with ApiClient(url, token) as client:
            await upload_calibrations(client, run_dir / "calibration")
            payloads = {rung: {"fidelity": rung, "seed": args.seed, "lease_s": args.lease_s,
                               **({"overrides": args.overrides[rung]} if args.overrides[rung] else {})}
                        for rung in state.ladder}
            rows = await evolve(client, state, args, payloads)
            # The table, plots and export cover the whole run: every session and rung, not only this one's.
            everything, tree = await fetch_run(client)
            calibrations = await client.calibrations()
        rows = everything or rows
        print(f"experiments: {write_export(run_dir, rows, tree)}")
        print(results_table(rows))
        ranked = standings(rows, {rung: rung_weight(calibrations.get(rung)) for rung in state.ladder})
        if ranked:
            print(ranked)
        plots = write_plots(rows, tree, run_dir / "plots")
        print(f"plots: {', '.join(str(p) for p in plots)}")
        print(f"wall time {time.monotonic() - wall:.0f}s; run directory {run_dir}")
        return 0
    finally:
        if cluster is not None:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--experiments", type=non_negative_int, default=2, help="new experiments to score (default 2)")
    parser.add_argument("--ladder", default=",".join(DEFAULT_LADDER),
                        help=f"rungs, cheapest first (default {','.join(DEFAULT_LADDER)}); one of "
                             f"{sorted(FIDELITIES)} each")
    parser.add_argument("--fidelity", default=None, type=fidelity_name, help="a single rung: the same as --ladder NAME")
    parser.add_argument("--promote", type=float, default=0.25,
                        help="fraction of a rung's scored candidates promoted to the next rung (default 0.25)")
    parser.add_argument("--promote-min", type=non_negative_int, default=1, help="promote at least this many (default 1)")
    parser.add_argument("--reevaluate-after", type=positive_int, default=3,
                        help="re-run an elite with fresh seeds once it has this many children (default 3)")
    parser.add_argument("--parallel", type=positive_int, default=1, help="research chains in flight at once")
    parser.add_argument("--seed", type=int, default=0,
                        help="first training seed of every experiment, the baseline's too (common random numbers "
                             "make their comparison fairer); research chains draw their own seeds from it")
    parser.add_argument("--run-dir", default=os.environ.get("RUN_DIR", "runs/default"))
    parser.add_argument("--api", default=None, help="URL of a deployed candidate API (default: start one here)")
    parser.add_argument("--token", default=os.environ.get("API_TOKEN"))
    parser.add_argument("--resume", action="store_true", help="continue the run recorded in RUN_DIR")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", type=key_value,
                        help="override fidelity fields: steps=100 on every rung, smoke.steps=100 on one")
    parser.add_argument("--program", action="append", default=[], metavar="FILE",
                        help="a hand-written program to run as a candidate too (origin human); repeatable")
    parser.add_argument("--lease-s", type=float, default=LEASE_S,
                        help="how long a silent worker holds a job before another takes it over")
    args = parser.parse_args(argv)
    args.programs = [read_program(path) for path in args.program]
    try:
        args.ladder = parse_ladder(args.fidelity or args.ladder)
        promotion_count(1, args.promote, args.promote_min)
        args.overrides = rung_overrides(parse_overrides(args.set), args.ladder)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.WARNING)
    stop_on_sigterm()  # `kill PID` stops the run as Ctrl-C does: workers hand their jobs back, then exit
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\nstopped: every job is back in the queue or done; continue with --resume", flush=True)
        return 130


if __name__ == "__main__":
    raise SystemExit(guard(main))
