"""Envoy's clock arithmetic, shared by the outlier detector and the health checker.

Envoy reads every protobuf Duration as whole milliseconds and compares
elapsed times in milliseconds; float sums of seconds can fall an ulp short
of a boundary Envoy would reach, so comparisons here allow :data:`EPS`.
"""

from __future__ import annotations

#: Slack for comparing float seconds where Envoy compares whole milliseconds.
EPS = 1e-9


def ms(seconds: float) -> int:
    """A duration in whole milliseconds, as Envoy reads a protobuf Duration."""
    return round(seconds * 1000)
