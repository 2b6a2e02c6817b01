"""Progress of a run on stderr: a bar on a terminal, a line every few seconds elsewhere.

On a terminal the bar (rich) appears ``delay_s`` (0.5 s) after the start,
whether or not a replication has reported yet (spawning the workers alone
takes about a second), so a run never sits silent for more than a second or
two. Off a terminal (a pipe, a CI log, ``nohup``) a bar would be a mess of
control characters, so a short line is printed every ``interval_s`` (5 s)
instead: replications done, simulated time, events per second, and the time
left. A run shorter than the interval prints nothing. Both are drawn by a
background thread, so they keep time while the main thread simulates a
long step; ``enabled=False`` (``--quiet``) draws nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

#: Seconds between two progress lines off a terminal.
INTERVAL_S = 5.0
#: Seconds before the bar appears on a terminal: it must show within 2 s of
#: the start, and rich takes ~0.2 s to import on a loaded machine.
DELAY_S = 0.5


def _eta(seconds: float) -> str:
    """A rough time left: ``~40 s``, ``~12 min``, ``~3.5 h``."""
    if seconds != seconds or seconds == float("inf"):
        return "unknown"
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


def _rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.1f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"


class Progress:
    """Simulated seconds done, per replication, shown as a bar or as periodic lines.

    Args:
        durations: The simulated length (s) of each replication tracked (for
            variants run side by side, every variant's replications).
        enabled: False draws nothing (``--quiet``).
        label: What is running (the experiment's name), at the start of each line.
        interval_s: Seconds between lines off a terminal.
        delay_s: Seconds before the bar appears on a terminal.
        stream: Where to draw; stderr (looked up when drawing) by default.
        tty: Force terminal (True) or line (False) output; by default the
            stream decides.
        unit: What one tracked slot is, in the plural (``runs`` for a sweep).
    """

    def __init__(self, durations: list[float], *, enabled: bool = True, label: str = "",
                 interval_s: float | None = None, delay_s: float | None = None,
                 stream: TextIO | None = None, tty: bool | None = None, unit: str = "replications"):
        self.durations = list(durations)
        self.total = sum(self.durations)
        self.done = [0.0] * len(self.durations)
        self.events = [0] * len(self.durations)
        self.skipped = 0.0  # simulated seconds reused from a previous run (not this run's speed)
        self.label = label
        self.unit = unit
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.delay_s = DELAY_S if delay_s is None else delay_s
        self._stream = stream
        self.enabled = enabled and bool(self.durations)
        self.tty = self._isatty() if tty is None else tty
        self.lines = 0
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar = None
        self._task = None
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="fleetsim-progress", daemon=True)
            self._thread.start()

    @property
    def stream(self) -> TextIO:
        """Where progress is drawn (stderr as it is now: tests and callers may swap it)."""
        return self._stream or sys.stderr

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def update(self, replication: int, t: float, events: int | None = None) -> None:
        """Replication ``replication`` has simulated ``t`` seconds, in ``events`` events so far."""
        with self._lock:
            self.done[replication] = max(self.done[replication], t)
            if events is not None:
                self.events[replication] = max(self.events[replication], events)

    def skip(self, replication: int) -> None:
        """Replication ``replication`` was stored by an earlier run and is reused."""
        with self._lock:
            self.skipped += self.durations[replication] - self.done[replication]
            self.done[replication] = self.durations[replication]

    def line(self) -> str:
        """The progress line: replications done, simulated time, events/s, time left."""
        with self._lock:
            done = sum(self.done)
            finished = sum(1 for d, n in zip(self.done, self.durations, strict=True) if d >= n)
            events = sum(self.events)
            skipped = self.skipped
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        ran = done - skipped
        left = self.total - done
        eta = left / (ran / elapsed) if ran > 0 else float("inf")
        head = f"{self.label}: " if self.label else ""
        pct = 100 * done / self.total if self.total else 100.0
        end = f"{_eta(eta)} left" if left > 0 else f"done in {_eta(elapsed)[1:]}"
        return (f"{head}{finished}/{len(self.durations)} {self.unit} done, "
                f"simulated {done:,.0f} of {self.total:,.0f} s ({pct:.0f}%), "
                f"{_rate(events / elapsed)} events/s, {end}")

    def _loop(self) -> None:
        if self.tty:
            import rich.progress  # noqa: F401  (imported while waiting, not after)

            if self._stop.wait(max(0.0, self.delay_s - (time.monotonic() - self.t0))):
                return
            self._start_bar()
            while not self._stop.wait(0.25):
                self._refresh_bar()
        else:
            while not self._stop.wait(self.interval_s):
                self._print(self.line())

    def _print(self, text: str) -> None:
        try:
            print(text, file=self.stream, flush=True)
            self.lines += 1
        except (OSError, ValueError):
            pass  # stderr closed or full: progress is not worth failing a run

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        with self._lock:
            if self._stop.is_set():
                return
            self._bar = Bar(TextColumn(f"simulating {self.label}".rstrip()), BarColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[info]}"),
                            TimeRemainingColumn(), console=Console(file=self.stream, force_terminal=True),
                            transient=True)
            self._task = self._bar.add_task("run", total=self.total or 1, info="")
            self._bar.start()
        self._refresh_bar()

    def _refresh_bar(self) -> None:
        with self._lock:
            if self._bar is None:
                return
            done = sum(self.done)
            finished = sum(1 for d, n in zip(self.done, self.durations, strict=True) if d >= n)
            events = sum(self.events)
        rate = events / max(time.monotonic() - self.t0, 1e-9)
        info = f"{finished}/{len(self.durations)} {self.unit}, {_rate(rate)} events/s"
        self._bar.update(self._task, completed=done, info=info)

    def close(self) -> None:
        """Stop drawing; off a terminal, end with a last line if any was printed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()
        elif self.enabled and not self.tty and self.lines:
            self._print(self.line())
