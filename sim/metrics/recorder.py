"""Client-side outcomes: KPIs for the cohort after warm-up, and per-second series.

Requests issued at or after the warm-up are *counted*: they make up
``offered``, ``succeeded``, ``failed`` (by cause) and ``in_flight`` at the
end, and successful ones feed the latency histogram. The per-second series
cover the whole run (warm-up included, so it can be shown): arrivals by the
second they were issued, completions and errors by the second they were
answered, in flight at the end of each second, and p50/p99 latency of the
successes answered in each second.
"""

from __future__ import annotations

import math

from .histogram import LogHistogram

OK = "ok"


class Recorder:
    """Collects every request's outcome.

    Args:
        duration_s: simulated seconds (sets the number of per-second bins).
        warmup_s: requests issued earlier do not count in the KPIs.
    """

    def __init__(self, duration_s: float, warmup_s: float):
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        # SimPy's run(until=d) stops before events at d, so every time is < d.
        n = max(1, int(math.ceil(duration_s)))
        self.n = n
        self.offered = 0
        self.succeeded = 0
        self.failed: dict[str, int] = {}
        self.latency = LogHistogram()
        self.ts_offered = [0] * n
        self.ts_tries = [0] * n  # client tries sent, retries included
        self.ts_done = [0] * n
        self.ts_good = [0] * n
        self.ts_errors: dict[str, list[int]] = {}
        self.ts_p50 = [math.nan] * n
        self.ts_p99 = [math.nan] * n
        self._sec = 0
        self._sec_latencies: list[float] = []
        self.window_done = 0
        self.window_good = 0

    def arrival(self, t: float, counted: bool) -> None:
        """A call issued at ``t`` (s): one arrival in its second, and in ``offered`` when counted."""
        if counted:
            self.offered += 1
        self.ts_offered[int(t)] += 1

    def call_sent(self, t: float, counted: bool) -> None:
        """A call whose only try leaves at ``t`` (arrival and try in one)."""
        sec = int(t)
        self.ts_offered[sec] += 1
        self.ts_tries[sec] += 1
        if counted:
            self.offered += 1

    def try_sent(self, t: float) -> None:
        """A client try (first or retry) sent at ``t`` (s), counted in its second."""
        self.ts_tries[int(t)] += 1

    def completion(self, now: float, t0: float, counted: bool, outcome: str) -> None:
        """A call issued at ``t0`` answered at ``now`` (s) with ``outcome``.

        It counts in the per-second series of the second it was answered
        (latency ``now - t0`` in seconds, successes only), in the window's
        throughput and goodput when answered after the warm-up, and in the
        KPIs and the latency histogram when ``counted``.
        """
        sec = int(now)
        if sec != self._sec:
            self._roll(sec)
        self.ts_done[sec] += 1
        in_window = now >= self.warmup_s
        if in_window:
            self.window_done += 1
        if outcome == OK:
            self.ts_good[sec] += 1
            latency = now - t0
            self._sec_latencies.append(latency)
            if in_window:
                self.window_good += 1
            if counted:
                self.succeeded += 1
                self.latency.add(latency)
        else:
            series = self.ts_errors.get(outcome)
            if series is None:
                series = self.ts_errors[outcome] = [0] * self.n
            series[sec] += 1
            if counted:
                self.failed[outcome] = self.failed.get(outcome, 0) + 1

    def _roll(self, sec: int) -> None:
        # One second's latencies, kept as a list and sorted once: exact rank
        # quantiles, cheaper per request than a second histogram.
        xs = self._sec_latencies
        if xs:
            xs.sort()
            last = len(xs) - 1
            self.ts_p50[self._sec] = xs[int(0.5 * last)]
            self.ts_p99[self._sec] = xs[int(0.99 * last)]
            self._sec_latencies = []
        self._sec = sec

    def finish(self) -> None:
        """Close the last second's p50/p99 latency (call once, at the end of the run)."""
        self._roll(self._sec)

    def in_flight_series(self) -> list[int]:
        """Requests issued and not yet answered at the end of each second."""
        out, total = [], 0
        for a, d in zip(self.ts_offered, self.ts_done, strict=True):
            total += a - d
            out.append(total)
        return out
