"""Upstream load-balancing policies with Envoy's semantics.

Each policy picks an index into a fixed host list, reading the caller's
``active`` list (active requests per host, as Envoy's ``rq_active``) when it
needs to. Randomness comes from a :class:`~sim.engine.UniformStream`.

- ``ROUND_ROBIN``: equal weights cycle through the hosts from a random start;
  unequal ``lb_weight`` uses an earliest-deadline-first (EDF) schedule, as
  Envoy's weighted round robin does.
- ``RANDOM``: a uniformly random host.
- ``LEAST_REQUEST`` (docs/root/intro/arch_overview/upstream/load_balancing/
  load_balancers.rst): with equal weights, sample ``choice_count`` hosts
  uniformly (with replacement) and keep the one with the fewest active
  requests, the first sampled winning ties (Envoy's ``unweightedHostPick``).
  With unequal weights, an EDF schedule where a host's weight is
  ``lb_weight / (active + 1) ** active_request_bias``, recomputed when the
  host is put back after a pick; bias 0 is weighted round robin.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from sim.config.models import Cluster
from sim.engine import UniformStream


class RoundRobin:
    __slots__ = ("n", "_next")

    def __init__(self, n: int, uniform: UniformStream):
        self.n = n
        self._next = int(uniform() * n)

    def pick(self) -> int:
        i = self._next
        self._next = i + 1 if i + 1 < self.n else 0
        return i


class RandomPick:
    __slots__ = ("n", "uniform")

    def __init__(self, n: int, uniform: UniformStream):
        self.n = n
        self.uniform = uniform

    def pick(self) -> int:
        return int(self.uniform() * self.n)


class LeastRequest:
    """Power of ``choice_count`` choices on ``active`` (equal weights)."""

    __slots__ = ("n", "uniform", "active", "choice_count")

    def __init__(self, n: int, uniform: UniformStream, active: list[int], choice_count: int = 2):
        self.n = n
        self.uniform = uniform
        self.active = active
        self.choice_count = choice_count

    def pick(self) -> int:
        u = self.uniform
        n = self.n
        active = self.active
        best = int(u() * n)
        for _ in range(self.choice_count - 1):
            j = int(u() * n)
            if active[j] < active[best]:
                best = j
        return best


class Edf:
    """Envoy's EDF scheduler: pick the earliest deadline, re-add at deadline + 1/weight.

    ``weight_of(i)`` is evaluated when host i is (re-)added, so dynamic
    weights (LEAST_REQUEST's) use the active count at the time of the pick.
    Ties on deadline go to the host added first.
    """

    __slots__ = ("weight_of", "_heap", "_order", "now")

    def __init__(self, n: int, weight_of):
        self.weight_of = weight_of
        self.now = 0.0
        self._order = 0
        self._heap: list[tuple[float, int, int]] = []
        for i in range(n):
            self._add(i)

    def _add(self, i: int) -> None:
        self._order += 1
        heapq.heappush(self._heap, (self.now + 1.0 / self.weight_of(i), self._order, i))

    def pick(self) -> int:
        deadline, _, i = heapq.heappop(self._heap)
        self.now = deadline
        self._add(i)
        return i


def make_policy(config: Cluster, weights: Sequence[int], active: list[int], uniform: UniformStream):
    """The picker for ``config.lb_policy`` over hosts with ``weights``."""
    n = len(weights)
    if n == 0:
        raise ValueError("a cluster needs at least one host")
    equal = len(set(weights)) == 1
    policy = config.lb_policy
    if policy == "ROUND_ROBIN":
        if equal:
            return RoundRobin(n, uniform)
        return Edf(n, lambda i: float(weights[i]))
    if policy == "RANDOM":
        return RandomPick(n, uniform)
    if policy == "LEAST_REQUEST":
        lr = config.least_request_lb_config
        if equal:
            return LeastRequest(n, uniform, active, lr.choice_count)
        bias = lr.active_request_bias
        if bias == 0:
            return Edf(n, lambda i: float(weights[i]))
        if bias == 1.0:
            return Edf(n, lambda i: weights[i] / (active[i] + 1))
        return Edf(n, lambda i: weights[i] / (active[i] + 1) ** bias)
    raise ValueError(f"unknown lb_policy {policy!r}")
