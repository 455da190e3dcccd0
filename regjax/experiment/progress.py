"""A one-line progress display for long runs: `label: epoch k/n, elapsed, remaining`,
redrawn in place on a terminal and silent otherwise (logs and pipes stay clean)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress over `total` units of work (e.g. epochs of all the groups of a comparison);
    the remaining time is extrapolated from the rate so far."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None):
        self.total, self.done = total, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.monotonic()

    def line(self, label: str) -> str:
        elapsed = time.monotonic() - self.start
        remaining = elapsed / self.done * (self.total - self.done) if self.done else None
        return (f"{label}  [{self.done}/{self.total} epochs]  elapsed {clock(elapsed)}  "
                f"remaining {'?' if remaining is None else clock(remaining)}")

    def advance(self, units: int, label: str) -> None:
        self.done = min(self.total, self.done + units)
        if self.enabled:
            self.stream.write("\r\x1b[K" + self.line(label))
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
