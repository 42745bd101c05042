"""Progress bars that suit where the output goes.

On a terminal a tqdm bar redraws itself in place. Written to a file (a service log, a pipe, CI), those
redraws become one ever-growing line of carriage returns that nobody can read, so there the same calls
print a plain line every `every` seconds instead, and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any


def _is_terminal(stream: IO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class PlainBar:
    """The part of tqdm's interface the project uses, printing plain periodic lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", file: IO | None = None, every: float = 10.0, disable: bool = False, **_: Any):
        self.iterable, self.desc, self.unit, self.every, self.disable = iterable, desc or "progress", unit, every, disable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.file, self.n, self.postfix = total, file or sys.stderr, 0, ""
        self.started = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def set_postfix(self, ordered_dict: dict | None = None, **values: Any) -> None:
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str = "", **_: Any) -> None:
        self.postfix = text

    def set_description(self, desc: str | None = None, **_: Any) -> None:
        self.desc = desc or self.desc

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n:
                self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        if self.disable:
            return
        elapsed = self.last - self.started
        done = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        rate = f", {self.n / elapsed:.3g} {self.unit}/s" if elapsed > 0 else ""
        extra = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {done} {self.unit}, {elapsed:.0f} s{rate}{extra}", file=self.file, flush=True)


def progress(iterable: Iterable | None = None, *, file: IO | None = None, every: float = 10.0, **options: Any):
    """A tqdm bar on a terminal, plain lines every `every` seconds elsewhere; the same keyword arguments."""
    stream = file or sys.stderr
    if options.get("disable") or not _is_terminal(stream):
        return PlainBar(iterable, file=stream, every=every, **options)
    from tqdm import tqdm

    return tqdm(iterable, file=stream, **options)
