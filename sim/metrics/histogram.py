"""A streaming, mergeable latency histogram with bounded relative error.

Buckets grow geometrically by ``gamma = (1 + a) / (1 - a)`` (the DDSketch
construction): bucket i holds values in (gamma^(i-1), gamma^i]. A quantile is
interpolated (geometrically) by rank inside the bucket that holds it, so it
moves smoothly between runs instead of jumping from bucket to bucket, and is
within gamma - 1 (0.81% at the default a = 0.004) of the exact rank quantile,
which lies in the same bucket. Memory depends on the range of values, never
on how many were added. Exact count, sum, min and max are kept too.
"""

from __future__ import annotations

import math


class LogHistogram:
    """Quantiles within ``gamma - 1`` (~2 x ``relative_accuracy``) of the exact rank quantile.

    Values at or below ``min_value`` (including 0) are counted in a zero
    bucket and reported as 0. Units are the caller's (fleetsim adds seconds).
    """

    __slots__ = ("relative_accuracy", "min_value", "gamma", "_inv_log_gamma",
                 "counts", "zero", "count", "sum", "min", "max")

    def __init__(self, relative_accuracy: float = 0.004, min_value: float = 1e-7):
        if not 0 < relative_accuracy < 1:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        if min_value <= 0:
            raise ValueError(f"min_value must be positive, got {min_value}")
        self.relative_accuracy = relative_accuracy
        self.min_value = min_value
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self.gamma)
        self.counts: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        """Add one value."""
        self.count += 1
        self.sum += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if x <= self.min_value:
            self.zero += 1
            return
        i = math.ceil(math.log(x) * self._inv_log_gamma)
        c = self.counts
        c[i] = c.get(i, 0) + 1

    def _compatible(self, other: LogHistogram) -> None:
        if (other.relative_accuracy, other.min_value) != (self.relative_accuracy, self.min_value):
            raise ValueError("cannot merge histograms with different accuracy or min_value")

    def merge(self, other: LogHistogram) -> None:
        """Add every value of ``other`` to this histogram."""
        self._compatible(other)
        for i, n in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + n
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float:
        """The exact mean of the values added (the caller's units); NaN when empty."""
        return self.sum / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The value at rank ``floor(q * (count - 1))`` (0-based), within the accuracy.

        NaN when empty. Clamped to the exact min and max.
        """
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self.count == 0:
            return math.nan
        return self.quantiles([q])[0]

    def quantiles(self, qs) -> list[float]:
        """Several quantiles in one pass over the buckets."""
        if self.count == 0:
            return [math.nan for _ in qs]
        for q in qs:
            if not 0 <= q <= 1:
                raise ValueError(f"quantile must be in [0, 1], got {q}")
        order = sorted(range(len(qs)), key=lambda k: qs[k])
        out = [math.nan] * len(qs)
        keys = sorted(self.counts)
        j = 0
        before = seen = self.zero  # values below bucket keys[j - 1], and up to it
        for k in order:
            rank = int(qs[k] * (self.count - 1))
            if rank < self.zero:
                out[k] = 0.0 if self.min <= 0 else self.min
                continue
            while seen <= rank and j < len(keys):
                before = seen
                seen += self.counts[keys[j]]
                j += 1
            i = keys[j - 1]
            frac = (rank - before + 0.5) / (seen - before)
            value = self.gamma ** (i - 1 + frac)
            out[k] = min(max(value, self.min), self.max)
        return out

    def to_dict(self) -> dict:
        """Plain JSON-ready data that :meth:`from_dict` reads back exactly (bucket keys as strings)."""
        return {
            "relative_accuracy": self.relative_accuracy, "min_value": self.min_value,
            "zero": self.zero, "count": self.count, "sum": self.sum,
            "min": self.min if self.count else None, "max": self.max if self.count else None,
            "counts": {str(k): v for k, v in sorted(self.counts.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> LogHistogram:
        """The histogram that :meth:`to_dict` wrote."""
        h = cls(d["relative_accuracy"], d["min_value"])
        h.zero, h.count, h.sum = d["zero"], d["count"], d["sum"]
        h.min = d["min"] if d["min"] is not None else math.inf
        h.max = d["max"] if d["max"] is not None else -math.inf
        h.counts = {int(k): v for k, v in d["counts"].items()}
        return h
