"""What every command line of the project shares: a user's mistake becomes one readable line.

A new user who types `--fidelity nonsense` or a wrong path should read what was wrong and what would be
right, not a Python traceback. The argument types here check a value where argparse reads it and name
the bad value with the allowed ones; `Parser` prints argparse's complaints as a single `error: ...` line;
`UsageError`, raised anywhere below `main`, does the same through `guard`.

It lives in `trainer` because that package imports no other of the project's packages (agent, evaluator
and database import it), so every entry point can use it without an import cycle.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class UsageError(Exception):
    """A mistake in what the user asked for; its message is the whole line the user reads."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (and points at --help) instead of usage + message."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def fidelity_name(value: str) -> str:
    from trainer.fidelity import FIDELITIES

    if value not in FIDELITIES:
        raise argparse.ArgumentTypeError(f"unknown fidelity {value!r} (choose from {', '.join(FIDELITIES)})")
    return value


def existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such program file: {value}" if value.endswith(".py")
                                         else f"no such file: {value}")
    return path


def existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {value}")
    return path


def checkpoint_dir(value: str) -> Path:
    """A trained model's folder: it holds the config.json that trainer.checkpoint writes."""
    path = existing_dir(value)
    if not (path / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"not a checkpoint directory (no config.json in it): {value}")
    return path


def one_of(choices, what: str) -> Callable[[str], str]:
    """An argument type accepting one of `choices`, naming them when the value is not one."""

    def check(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {value!r} (choose from {', '.join(choices)})")
        return value

    return check


def whole_number(minimum: int):
    """An argument type for whole numbers of at least MINIMUM, naming the bad value."""

    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{value!r} must be at least {minimum}")
        return number

    return check


positive_int, non_negative_int = whole_number(1), whole_number(0)


def key_value(value: str) -> str:
    """One `KEY=VALUE` override; kept as the string the fidelity's own parser types."""
    key, sep, _ = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return value


def device_name(value: str) -> str:
    if not DEVICE.match(value):
        raise argparse.ArgumentTypeError(f"unknown device {value!r} (choose from cpu, cuda, cuda:N, mps)")
    return value


def guard(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run an entry point's `main`; a UsageError raised anywhere below it becomes one line and exit status 2."""
    try:
        return main(argv) or 0
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
