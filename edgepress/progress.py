"""progress: edgepress's own live progress line, one per stage, with an estimate of the time left.

Drawn on a terminal only: when stderr is a pipe or a file (CI logs, `2> log`), when TERM is
"dumb", when CI is set, or with EDGEPRESS_PROGRESS=0, nothing is written at all, so logs hold
results, not carriage returns. The line is cleared when the stage ends: what remains on the
terminal is what the command printed. The line goes to a duplicate of the terminal's file
descriptor taken when the stage starts, so it keeps drawing while a converter's own output is
being kept off the terminal (export.quiet, runtime/enginelog point fd 2 at a file).
Torch-free (the device-side commands may use it too).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

ENV = "EDGEPRESS_PROGRESS"
_REDRAW_S = 0.1  # at most ten redraws a second: a fast loop is not slowed by its own bar


def enabled(stream=None) -> bool:
    stream = stream or sys.stderr
    if os.environ.get(ENV, "1") == "0" or os.environ.get("CI") or \
            os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Bar:
    """`update()` once per step of `total`; the line shows the count, the step being done and,
    after the first step, the time left at the mean pace so far."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total, self.done = label, max(int(total), 1), 0
        self.stream = stream or os.fdopen(os.dup(sys.stderr.fileno()), "w")
        self._own = stream is None
        self.start = self._drawn = time.monotonic()
        self.note = ""

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        self.note = note or self.note
        now = time.monotonic()
        if now - self._drawn >= _REDRAW_S or self.done == self.total:
            self._drawn = now
            self.draw(now)

    def draw(self, now: float) -> None:
        elapsed = now - self.start
        left = (f", ~{_seconds(elapsed / self.done * (self.total - self.done))} left"
                if self.done else "")
        width = 20
        filled = width * self.done // self.total
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                f" {_seconds(elapsed)}{left}{'  ' + self.note if self.note else ''}")
        self.stream.write("\r\x1b[2K" + line[:_columns(self.stream)])
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[2K")
        self.stream.flush()
        if self._own:
            self.stream.close()


class _Off:
    """The bar where none is drawn: the same calls, doing nothing."""

    def update(self, n: int = 1, note: str = "") -> None:
        pass


OFF = _Off()


@contextlib.contextmanager
def bar(label: str, total: int, stream=None):
    """A Bar for the body's steps on a terminal, else one that draws nothing."""
    if not enabled(stream):
        yield OFF
        return
    b = Bar(label, total, stream)
    b.draw(b.start)
    try:
        yield b
    finally:
        b.close()


def _seconds(s: float) -> str:
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}min"


def _columns(stream) -> int:
    try:
        return max(os.get_terminal_size(stream.fileno()).columns - 1, 20)
    except (OSError, ValueError, AttributeError):  # not a terminal (a test's stream): 80 wide
        return 79
