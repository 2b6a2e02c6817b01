"""Scheduling a callback on SimPy's event queue at the lowest possible cost.

The hot path schedules several timed callbacks per request. Instead of a
``simpy.Timeout`` (an object, a delay check, a callbacks list) each one is a
single heap entry, ``(time, NORMAL, event id, callback, value)``: SimPy's own
entry ``(time, priority, event id, event)`` with the event replaced by what
it would have called. Entries of both kinds share SimPy's heap and are
ordered by SimPy's (time, priority, id) key, so hot-path callbacks, SimPy
events and SimPy processes interleave exactly as SimPy orders them.

``Environment.step`` knows only 4-tuples, so a context whose queue holds
these entries is driven by :meth:`sim.engine.SimContext.run` (which handles
both), never by ``env.run``.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush
from typing import Any

from simpy.core import NORMAL


def call_later(env, delay: float, callback: Callable[[Any], None], value: Any = None) -> None:
    """Call ``callback(value)`` ``delay`` seconds from now (``delay`` >= 0)."""
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), callback, value))


def make_call_later(env) -> Callable[[float, Callable, Any], None]:
    """``call_later`` bound to ``env``, for components to keep as an attribute."""
    queue = env._queue
    eid = env._eid

    def schedule(delay: float, callback: Callable[[Any], None], value: Any = None,
                 _push=heappush, _normal=NORMAL) -> None:
        _push(queue, (env._now + delay, _normal, next(eid), callback, value))

    return schedule


def make_call_at(env) -> Callable[[float, Callable, Any], None]:
    """Like :func:`make_call_later`, at an absolute time ``when`` (>= now).

    For a message that leaves at a time computed ahead (a client's batch):
    ``at(t + latency)`` is the time it would have had had it been sent at
    ``t``, where ``later((t - now) + latency)`` can differ in the last bit.
    """
    queue = env._queue
    eid = env._eid

    def schedule_at(when: float, callback: Callable[[Any], None], value: Any = None,
                    _push=heappush, _normal=NORMAL) -> None:
        _push(queue, (when, _normal, next(eid), callback, value))

    return schedule_at
