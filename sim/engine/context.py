"""The simulation context: a SimPy environment, seeded streams, metric sinks.

The engine knows nothing of gateways. Components receive a :class:`SimContext`
and their own name; everything random they do comes from ``ctx.rng(name)``.
"""

from __future__ import annotations

import hashlib
from heapq import heappop, heappush
from typing import Any

import numpy as np
import simpy

from .calls import make_call_at, make_call_later


def name_key(name: str) -> tuple[int, int]:
    """A stable 64-bit hash of a component name, as two 32-bit words.

    Python's ``hash`` is salted per process; blake2b is not, so a component's
    stream is the same in every process and every run.
    """
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return (value >> 32, value & 0xFFFFFFFF)


class SimContext:
    """Everything a component needs from the engine.

    Attributes:
        env: the SimPy environment (time in seconds).
        seed: the experiment seed.
        replication: the replication index r; its streams descend from
            ``SeedSequence(seed, spawn_key=(r,))``.
        warmup_s: statistics ignore what arrives before this time.
        duration_s: simulated time of the run.
        counters: per-component counters, ``counters[component][name]``.
    """

    def __init__(self, seed: int, replication: int = 0, *, warmup_s: float = 0.0, duration_s: float = 0.0):
        if seed < 0:
            raise ValueError(f"Negative seed {seed}")
        if replication < 0:
            raise ValueError(f"Negative replication {replication}")
        self.env = simpy.Environment()
        #: ``call_later(delay_s, callback, value)``: the hot path's way to schedule.
        self.call_later = make_call_later(self.env)
        #: ``call_at(time_s, callback, value)``: the same at an absolute time (>= now).
        self.call_at = make_call_at(self.env)
        self.seed = seed
        self.replication = replication
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.root = np.random.SeedSequence(seed, spawn_key=(replication,))
        self.counters: dict[str, dict[str, Any]] = {}
        self._streams: set[str] = set()
        self._pending_key: tuple | None = None
        self._pending_index: dict[Any, list[tuple[float, Any]]] = {}

    def rng(self, name: str) -> np.random.Generator:
        """The random stream of component ``name``; each name may take one.

        The stream is ``SeedSequence(seed, spawn_key=(r, *hash(name)))``, so
        adding a component never shifts another component's draws, and two
        variants of an experiment share common random numbers.
        """
        if name in self._streams:
            raise ValueError(f"stream {name!r} already taken")
        self._streams.add(name)
        seq = np.random.SeedSequence(self.seed, spawn_key=(self.replication, *name_key(name)))
        return np.random.Generator(np.random.PCG64(seq))

    def run(self, until: float) -> None:
        """Process every event before ``until``, then set the clock to ``until``.

        With ``until`` infinite, run until no event is left (the clock stays
        at the last event).

        The body of ``simpy.Environment.step`` inlined into one loop for
        performance reasons (it is most of the cost per event), extended to
        the hot path's light entries (:mod:`sim.engine.calls`), with the same
        semantics as ``env.run(until=...)``: events at exactly ``until`` are
        left for later, a failed event that nobody defused is raised, and
        SimPy processes and events interleave with the hot path's callbacks
        in the heap's (time, priority, id) order.
        """
        env = self.env
        if until < env._now:
            raise ValueError(f"until ({until}) must not be before now ({env._now})")
        queue = env._queue
        pop = heappop
        while queue:
            entry = pop(queue)
            try:  # a hot-path callback (sim.engine.calls) is a 5-tuple
                t, _, _, callback, value = entry
            except ValueError:
                t = entry[0]
            else:
                if t < until:
                    env._now = t
                    callback(value)
                    continue
            if t >= until:
                heappush(queue, entry)  # not ours to run yet (once per call)
                break
            env._now, _, _, event = entry
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc
        if until != float("inf"):
            env._now = until

    def pending(self, callback) -> list[tuple[float, Any]]:
        """(time, value) of every scheduled call of ``callback``, in heap order.

        For components that close their time integrals at the edges of the
        measurement window instead of on every event.
        """
        # Every component asks at the same instant (the edges of the window), so
        # the heap is indexed once per instant and state of the schedule, not
        # scanned once per component: a fleet of thousands of instances would
        # otherwise cost instances x heap size.
        key = (self.env._now, len(self.env._queue), self.events_scheduled())
        if self._pending_key != key:
            index: dict[Any, list[tuple[float, Any]]] = {}
            for e in self.env._queue:
                if len(e) == 5:
                    index.setdefault(e[3], []).append((e[0], e[4]))
            self._pending_index = index
            self._pending_key = key
        return list(self._pending_index.get(callback, ()))

    def events_scheduled(self) -> int:
        """Events scheduled so far (SimPy numbers each with an ``itertools.count``)."""
        # Reading the counter's repr costs nothing on the hot path.
        text = repr(self.env._eid)
        return int(text[text.index("(") + 1 : text.rindex(")")])

    def counter_block(self, name: str) -> dict[str, Any]:
        """The counters dict of component ``name`` (created empty)."""
        return self.counters.setdefault(name, {})

    @property
    def now(self) -> float:
        """Simulated time, in seconds since the start of the run."""
        return self.env.now
