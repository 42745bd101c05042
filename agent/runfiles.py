"""A run's experiments as files: exported at the end of every session, read back to report on or compare runs.

`RUN_DIR/experiments.json` holds every experiment of the run (all sessions, every rung) and the lineage
tree, exactly as the candidate API returned them. A run directory from before that file existed still has
its embedded database, `RUN_DIR/db.sqlite`, whose rows are read directly (read-only, no server needed).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainer.cli import UsageError

EXPORT = "experiments.json"
PAGE = 500  # the API's largest page


@dataclass
class Run:
    name: str
    experiments: list[dict]
    tree: list[dict] = field(default_factory=list)


async def fetch_run(client) -> tuple[list[dict], list[dict]]:
    """Every experiment the API holds, in index order, and the lineage tree."""
    experiments, skip = [], 0
    while True:
        page = await client.list_experiments(skip=skip, limit=PAGE)
        experiments += page["data"]
        skip += len(page["data"])
        if not page["data"] or skip >= page.get("count", skip):
            break
    experiments.sort(key=lambda e: e["index"])
    return experiments, await client.tree()


def write_export(run_dir: Path, experiments: list[dict], tree: list[dict]) -> Path:
    path = Path(run_dir) / EXPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    record = {"exported_at": time.time(), "experiments": experiments, "tree": tree}
    tmp.write_text(json.dumps(record, default=str))
    tmp.replace(path)
    return path


def _from_database(path: Path) -> list[dict]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT data FROM experiments").fetchall()
    except sqlite3.DatabaseError as err:
        raise UsageError(f"cannot read the experiments in {path}: {err}") from None
    finally:
        connection.close()
    experiments = []
    for (data,) in rows:
        document = json.loads(data)
        document.pop("_id", None)  # the store's own id, not part of an experiment
        experiments.append(document)
    return sorted(experiments, key=lambda e: e["index"])


def _tree(experiments: list[dict]) -> list[dict]:
    keys = ("index", "parent", "name", "fitness", "fidelity", "status")
    return [{key: e.get(key) for key in keys} for e in experiments]


def load_run(run_dir: str | Path) -> Run:
    """The run in RUN_DIR; a UsageError naming the directory when it holds no run."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise UsageError(f"no such run directory: {run_dir}")
    export, database = folder / EXPORT, folder / "db.sqlite"
    if export.is_file():
        try:
            record = json.loads(export.read_text())
        except json.JSONDecodeError as err:
            raise UsageError(f"{export} is not valid JSON: {err}") from None
        experiments = sorted(record.get("experiments") or [], key=lambda e: e["index"])
        return Run(folder.name, experiments, record.get("tree") or _tree(experiments))
    if database.is_file():
        experiments = _from_database(database)
        return Run(folder.name, experiments, _tree(experiments))
    raise UsageError(f"not a run directory (neither {EXPORT} nor db.sqlite in it): {run_dir}")
