"""lm-eval's own command line, with our model registered and our offline tasks at hand.

    python -m evaluator.lm_eval_cli --model discovery --model_args checkpoint=DIR --tasks arc_easy,recall_kv \
        --offline-tasks [CACHE] --limit 50

lm-eval finds a model class only once the module registering it is imported; this wrapper imports
`evaluator.harness` (which registers `discovery`) and hands the rest of the arguments to lm-eval's
`cli_evaluate`. With `--offline-tasks` it first builds the local task files (under CACHE, default
RUN_DIR/cache) and adds them with `--include_path`: the local copies then stand in for lm-eval's
hub-backed tasks of the same names, and the recall and perplexity tasks become available. Model
arguments: checkpoint, batch_size, max_length, device (see `DiscoveryLM`).
"""

from __future__ import annotations

import sys

OFFLINE_FLAG = "--offline-tasks"


def local_include_args(argv: list[str]) -> list[str]:
    """Replace `--offline-tasks [CACHE]` by `--include_path <built task folder>`."""
    if OFFLINE_FLAG not in argv:
        return argv
    from evaluator.evaluate import default_cache_dir
    from evaluator.tasks import build_tasks

    at = argv.index(OFFLINE_FLAG)
    has_value = at + 1 < len(argv) and not argv[at + 1].startswith("-")
    cache = argv[at + 1] if has_value else default_cache_dir()
    rest = argv[:at] + argv[at + (2 if has_value else 1):]
    return [*rest, "--include_path", str(build_tasks(cache))]


def main(argv: list[str] | None = None) -> None:
    from evaluator.quiet import offline_hub

    argv = list(sys.argv[1:] if argv is None else argv)
    if OFFLINE_FLAG in argv:
        offline_hub(True)
    argv = local_include_args(argv)
    from lm_eval.__main__ import cli_evaluate

    import evaluator.harness  # noqa: F401  (registers the `discovery` model)

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
