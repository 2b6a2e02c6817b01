"""A progress bar on stderr for runs longer than a few seconds.

Nothing is drawn for the first ``delay_s`` seconds, nor when stderr is not a
terminal, so quick runs and logs stay clean.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Tracks simulated seconds done across replications."""

    def __init__(self, replications: int, duration_s: float, *, enabled: bool = True, delay_s: float = 2.0):
        self.total = replications * duration_s
        self.done = [0.0] * replications
        self.enabled = enabled and sys.stderr.isatty()
        self.delay_s = delay_s
        self.t0 = time.monotonic()
        self._bar = None
        self._task = None

    def update(self, replication: int, t: float) -> None:
        self.done[replication] = max(self.done[replication], t)
        if not self.enabled:
            return
        if self._bar is None:
            if time.monotonic() - self.t0 < self.delay_s:
                return
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("simulating"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("run", total=self.total)
        self._bar.update(self._task, completed=sum(self.done))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
