"""Scheduling a callback on SimPy's event queue at the lowest possible cost.

The hot path schedules several timed callbacks per request. ``simpy.Timeout``
validates its delay and goes through ``Environment.schedule``; here the same
heap entry SimPy would make, ``(time, NORMAL, event id, event)``, is pushed
directly (inlined from ``Environment.schedule`` for performance reasons), with
an event object that carries only what ``Environment.step`` reads:
``callbacks``, ``_ok`` and ``_value``. Same-time events keep SimPy's order
(by event id), so runs stay deterministic and interleave correctly with
ordinary SimPy events and processes.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush
from typing import Any

from simpy.core import NORMAL


class Call:
    """A scheduled callback; ``value`` reaches the callback as ``event._value``."""

    __slots__ = ("callbacks", "_ok", "_value")

    def __init__(self, callback: Callable, value: Any):
        self.callbacks = [callback]
        self._ok = True
        self._value = value

    @property
    def value(self) -> Any:
        return self._value


def call_later(env, delay: float, callback: Callable, value: Any = None) -> None:
    """Call ``callback(event)`` ``delay`` seconds from now (``delay`` >= 0)."""
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), Call(callback, value)))


def make_call_later(env) -> Callable[[float, Callable, Any], None]:
    """``call_later`` bound to ``env``, for components to keep as an attribute."""
    queue = env._queue
    eid = env._eid

    def schedule(delay: float, callback: Callable, value: Any = None) -> None:
        heappush(queue, (env._now + delay, NORMAL, next(eid), Call(callback, value)))

    return schedule
