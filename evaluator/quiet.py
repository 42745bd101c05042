"""Keep the evaluation libraries offline and quiet.

lm-eval logs a line per task setting and draws a bar per task, and `datasets` one per file it
converts; over a dozen tasks that buries the one progress bar and table that matter. The hub switches matter more: with
them on, `datasets` never waits on a network that is not there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys

NOISY_LOGGERS = ("lm_eval", "lm-eval", "datasets", "huggingface_hub", "transformers", "accelerate")


def offline_hub(offline: bool) -> None:
    """Local files only (the default, unless the environment already says otherwise), or allow the hub."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if offline:
            os.environ.setdefault(name, "1")
        else:
            os.environ[name] = "0"
    if not offline:
        # Libraries already imported read the switches once: change their copies too.
        datasets_config = sys.modules.get("datasets.config")
        if datasets_config is not None:
            datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = False
        hub_constants = sys.modules.get("huggingface_hub.constants")
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = False


@contextlib.contextmanager
def quiet_libraries(level: int = logging.ERROR):
    """Raise the noisy libraries' log level and hide `datasets` progress bars, restoring both after."""
    import datasets
    import lm_eval.api.task as lm_eval_task

    previous = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    bars_were_on = datasets.is_progress_bar_enabled()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    datasets.disable_progress_bars()
    # lm-eval draws a bar per task while it builds requests, with no switch: hand it a silent one.
    bar = lm_eval_task.tqdm
    lm_eval_task.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        lm_eval_task.tqdm = bar
        for name, old in previous.items():
            logging.getLogger(name).setLevel(old)
        if bars_were_on:
            datasets.enable_progress_bars()
