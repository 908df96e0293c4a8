"""The bench's progress, on stderr: a bar on a terminal, plain lines elsewhere.

On a terminal one line is redrawn in place (``\\r``), cut to the terminal's
width so that it never wraps; in a log or a pipe each step is a line of its
own ("[3/140] micro: getconn + putconn: ferropool, round 1/5"). Progress
never goes to stdout, so ``> results.txt`` keeps only the table.
"""

from __future__ import annotations

import shutil
from time import monotonic
from typing import TextIO

__all__ = ["ProgressBar"]

_BAR_WIDTH = 20


class ProgressBar:
    """Counts steps towards *total* and shows where the run is."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self._total = max(total, 1)
        self._step = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._shown = 0
        self._started = monotonic()

    def __call__(self, title: str, contender: str, phase: str) -> None:
        """One more step: *contender*'s *phase* ("round 2/5") in measurement *title*."""
        self._step = min(self._step + 1, self._total)
        what = f"{title}: {contender}, {phase}"
        if self._tty:
            done = self._step / self._total
            filled = round(done * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self._redraw(f"[{bar}] {done:4.0%} {self._elapsed()}  {what}")
        else:
            self._line(f"[{self._step}/{self._total}] {what}")

    def note(self, text: str) -> None:
        """A message outside the steps, such as "starting a throwaway PostgreSQL"."""
        if self._tty:
            self._redraw(text)
        else:
            self._line(text)

    def done(self) -> None:
        """Clear the bar, so that what follows starts on a clean line."""
        if self._tty and self._shown:
            self._stream.write("\r" + " " * self._shown + "\r")
            self._stream.flush()
            self._shown = 0

    def _elapsed(self) -> str:
        seconds = int(monotonic() - self._started)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _redraw(self, text: str) -> None:
        # One column short of the width: writing the last column wraps on some terminals.
        text = text[: shutil.get_terminal_size().columns - 1]
        self._stream.write("\r" + text.ljust(self._shown))
        self._stream.flush()
        self._shown = len(text)

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
