"""The agent roles as job workers: `python -m agent.worker --role researcher|engineer|analyst [--once]`.

Each role leases its job kind from the candidate API (API_URL, API_TOKEN in the environment or as
flags) and handles it with the role's handler.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os

from database.worker import run_worker

# role -> (job kind, module, handler function)
ROLES = {
    "researcher": ("research", "agent.researcher", "handle_research"),
    "engineer": ("engineer", "agent.engineer", "handle_engineer"),
    "analyst": ("analyse", "agent.analyst", "handle_analyse"),
}


def load_handler(role: str):
    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r}; choose one of {sorted(ROLES)}")
    kind, module, name = ROLES[role]
    return kind, getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", required=True, choices=sorted(ROLES))
    parser.add_argument("--api", default=os.environ.get("API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("API_TOKEN", "dev-token"))
    parser.add_argument("--worker-id", default=os.environ.get("WORKER_ID"))
    parser.add_argument("--once", action="store_true", help="handle one job, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {args.role} %(levelname)s %(message)s")
    kind, handler = load_handler(args.role)
    run_worker([kind], handler, api_url=args.api, token=args.token, worker_id=args.worker_id, once=args.once)


if __name__ == "__main__":
    main()
