"""The bench's progress, on stderr: a bar on a terminal, plain lines elsewhere.

On a terminal one line is redrawn in place (``\\r``): the bar, the share
done, the time taken and an estimate of the time left, then what runs now,
shortened at a word boundary to the terminal's width so that it never
wraps. In a log or a pipe each step is a line of its own ("[3/140] micro:
getconn + putconn: ferropool, round 1/5"). Progress never goes to stdout,
so ``> results.txt`` keeps only the table.

Steps differ in length (a round over HTTP lasts seconds, one in-process a
fraction of one), so the share done and the estimate count each step by
its planned seconds, not one step as one unit; time the plan does not
know of (starting servers and pools) is spread over the estimate as it
is observed.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from dataclasses import dataclass
from time import monotonic
from typing import TextIO

__all__ = ["ProgressBar", "Steps"]

_BAR_WIDTH = 20
# No estimate before this share of the planned time is done: too rough.
_ESTIMATE_AFTER = 0.03


@dataclass(frozen=True)
class Steps:
    """How many progress steps a part of the run reports, and their planned seconds."""

    count: int
    seconds: float

    def __add__(self, other: Steps) -> Steps:
        return Steps(self.count + other.count, self.seconds + other.seconds)


class ProgressBar:
    """Counts steps towards *total* and shows where the run is."""

    def __init__(self, total: Steps, stream: TextIO) -> None:
        self._total = Steps(max(total.count, 1), max(total.seconds, 1e-9))
        self._step = 0
        self._planned_done = 0.0
        self._current = 0.0
        self._stream = stream
        self._tty = stream.isatty()
        self._shown = 0
        self._started = monotonic()

    def __call__(self, title: str, contender: str, phase: str, seconds: float) -> None:
        """One more step, planned to last *seconds*: *contender*'s *phase*
        ("round 2/5") in measurement *title*."""
        # The step before this one is over.
        self._planned_done = min(self._planned_done + self._current, self._total.seconds)
        self._current = seconds
        self._step = min(self._step + 1, self._total.count)
        what = f"{title}: {contender}, {phase}"
        if self._tty:
            done = self._planned_done / self._total.seconds
            filled = round(done * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            elapsed = monotonic() - self._started
            status = f"[{bar}] {done:4.0%} {_clock(elapsed)}{self._left(done, elapsed)}"
            self._redraw(status, what)
        else:
            self._line(f"[{self._step}/{self._total.count}] {what}")

    def note(self, text: str) -> None:
        """A message outside the steps, such as "starting a throwaway PostgreSQL"."""
        if self._tty:
            self._redraw("", text)
        else:
            self._line(text)

    def done(self) -> None:
        """Clear the bar, so that what follows starts on a clean line."""
        if self._tty and self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0

    @staticmethod
    def _left(done: float, elapsed: float) -> str:
        if done < _ESTIMATE_AFTER:
            return ""
        return f", about {_clock(elapsed / done * (1 - done))} left"

    def _redraw(self, status: str, what: str) -> None:
        # One column short of the width: writing the last column wraps on some terminals.
        width = self._columns() - 1
        text = f"{status}  {what}" if status else what
        if len(text) > width:
            room = width - len(status) - 2 if status else width
            short = _shorten(what, room)
            text = f"{status}  {short}".rstrip() if status else short
            text = text[:width]  # a terminal narrower than the status itself
        self._stream.write("\r" + text.ljust(self._shown))
        self._stream.flush()
        self._shown = len(text)

    def _columns(self) -> int:
        """The width of the terminal the bar is drawn on (stderr's, when stdout
        goes to a file), or $COLUMNS when set, as shutil reads it."""
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        try:
            return os.get_terminal_size(self._stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size().columns

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _shorten(text: str, width: int) -> str:
    """*text* cut to *width* columns at a word boundary, marked with "..."."""
    if width < 4:
        return ""
    return textwrap.shorten(text, width, placeholder=" ...", break_long_words=False) or ""
