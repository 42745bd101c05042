"""What a job's payload may ask of the worker that runs it: limits no higher than the worker's, data only
under the roots it was given.

    check_payload_overrides("smoke", {"memory_mb": 999999})   # raises PayloadRefused, naming the cap

Anyone holding the API token can queue a job, and its payload's overrides become the sandbox's limits
and the corpus the trainer tokenises. So each worker holds them to its own caps: by default the
fidelity's own values (an override may lower a limit, never raise it), or `WORKER_MAX_<FIELD>` in its
environment (`WORKER_MAX_TIMEOUT_S=7200`). A dataset given as a path must lie under one of
`DATA_ROOTS` (os.pathsep-separated; default: the run directory), so a payload cannot make the trusted
side read, tokenise and hand to a candidate any file the worker can read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trainer.data import LOCAL_CORPORA, is_local
from trainer.fidelity import get_fidelity

CAPPED = ("timeout_s", "cpu_s", "memory_mb", "disk_mb")


class PayloadRefused(ValueError):
    """A job asks for more than this worker allows."""


def worker_env(overrides_by_rung: dict[str, dict], run_dir: Path, env=os.environ) -> dict[str, str]:
    """Settings that let a run's own workers take the limits and the data its user chose on purpose."""
    raised: dict[str, float] = {}
    roots = [str(p) for p in data_roots({**env, "RUN_DIR": str(run_dir)})]
    for rung, overrides in overrides_by_rung.items():
        overrides = overrides or {}
        for key, cap in caps(rung, {}).items():
            if key in overrides and float(overrides[key]) > cap:
                raised[key] = max(raised.get(key, 0.0), float(overrides[key]))
        dataset = str(overrides.get("dataset", ""))
        if dataset and dataset not in LOCAL_CORPORA and is_local(dataset):
            roots.append(str(_path_of(dataset)))
    return {"DATA_ROOTS": os.pathsep.join(roots),
            **{f"WORKER_MAX_{key.upper()}": f"{value:g}" for key, value in raised.items()}}


def _path_of(dataset: str) -> Path:
    """The directory or file a local dataset (a path or a glob pattern) reads from."""
    return Path(re.split(r"[*?\[]", dataset)[0] or ".").resolve()


def caps(fidelity_name: str, env=os.environ) -> dict[str, float]:
    defaults = get_fidelity(fidelity_name)
    return {key: float(env.get(f"WORKER_MAX_{key.upper()}") or getattr(defaults, key)) for key in CAPPED}


def data_roots(env=os.environ) -> list[Path]:
    configured = env.get("DATA_ROOTS") or env.get("RUN_DIR") or "runs/default"
    return [Path(p).resolve() for p in configured.split(os.pathsep) if p]


def check_payload_overrides(fidelity_name: str, overrides: dict | None, env=os.environ) -> None:
    """Raise PayloadRefused when an override exceeds this worker's caps or names data outside its roots."""
    overrides = overrides or {}
    limits = caps(fidelity_name, env)
    for key, cap in limits.items():
        if key in overrides:
            value = float(overrides[key])
            # 0 means "no CPU budget" for cpu_s: only allowed when the worker's own cap is none either.
            if value > cap or (key == "cpu_s" and value == 0 and cap > 0):
                raise PayloadRefused(f"payload override {key}={overrides[key]} is over this worker's limit of "
                                     f"{cap:g} (raise it with WORKER_MAX_{key.upper()})")
    dataset = overrides.get("dataset")
    if dataset is not None and str(dataset) not in LOCAL_CORPORA and is_local(str(dataset)):
        path = _path_of(str(dataset))
        roots = data_roots(env)
        if not any(path == root or root in path.parents for root in roots):
            raise PayloadRefused(f"payload dataset {dataset!r} is outside this worker's data roots "
                                 f"({', '.join(map(str, roots))}; set DATA_ROOTS)")
