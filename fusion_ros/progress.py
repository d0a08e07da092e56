"""Progress for the project's commands: tqdm's live bar on a terminal, a few whole lines in a log.

tqdm redraws its bar with a carriage return several times a second; piped into a file (``make demo >
demo.log``) every redraw stays, hundreds per stage. So when the stream is not a terminal, ``progress``
writes a start line, a line at every tenth of a known total (at most one per MIN_INTERVAL_S: a stage of a
few seconds gets none) and an end line with the count, the time and the rate instead. Every command's
progress goes through here.

    for pair in progress(pairs, desc="eval", unit="pair"): ...
    bar = progress(total=n, desc="cache", unit="msg"); bar.update(k); bar.close()
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO

from tqdm import tqdm

STEPS = 10  # lines between start and end in a log: one at every tenth of the total ...
MIN_INTERVAL_S = 5.0  # ... at most one per this many seconds


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, disable: bool = False, leave: bool = True, file: TextIO | None = None):
    """A tqdm bar over ``iterable`` (or updated by hand) when ``file`` (default stderr) is a terminal, else a
    ``LineProgress`` with the same use. ``leave=False`` clears a terminal bar when done (a log keeps its lines)."""
    stream = sys.stderr if file is None else file
    if disable or _is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=leave,
                    dynamic_ncols=True, file=stream)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, file=stream)


def write(text: str) -> None:
    """Print a line between progress updates (on a terminal, tqdm keeps its bar below it)."""
    tqdm.write(text)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """tqdm's interface as the commands use it (iterate, ``update``, ``n``, ``set_postfix``, ``close``), as a
    start line, a line at every tenth of the total (when known, ``min_interval_s`` apart at least) and an
    end line with the rate."""

    def __init__(self, iterable: Iterable | None, *, total: int | None, desc: str, unit: str, initial: int,
                 file: TextIO, min_interval_s: float = MIN_INTERVAL_S):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.file = iterable, total, desc, unit, file
        self.n = self._initial = initial
        self._started = self._last_line = time.monotonic()
        self.min_interval_s = min_interval_s
        self._postfix = ""
        self._tenths_shown = self._tenths(initial)
        self._closed = False
        self._line(f"started at {initial}/{total}" if total else "started")

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        tenths = self._tenths(self.n)
        if (tenths > self._tenths_shown and self.n < (self.total or 0)
                and time.monotonic() - self._last_line >= self.min_interval_s):
            self._tenths_shown = tenths
            self._line(f"{self.n}/{self.total} {self.unit} ({100 * self.n // self.total} %), {self._rate()}")

    def set_postfix(self, values: dict | None = None, **more) -> None:
        """Shown on the following lines, as tqdm shows it beside its bar."""
        self._postfix = ", ".join(f"{key}={value}" for key, value in {**(values or {}), **more}.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        self._line(f"finished {count} {self.unit} in {time.monotonic() - self._started:.1f} s, {self._rate()}")

    def _tenths(self, n: int) -> int:
        return n * STEPS // self.total if self.total else 0

    def _rate(self) -> str:
        elapsed = time.monotonic() - self._started
        done = self.n - self._initial
        return f"{done / elapsed:.3g} {self.unit}/s" if elapsed > 0 else f"- {self.unit}/s"

    def _line(self, text: str) -> None:
        postfix = f" [{self._postfix}]" if self._postfix else ""
        self.file.write(f"{self.desc}: {text}{postfix}\n")
        self.file.flush()
        self._last_line = time.monotonic()
