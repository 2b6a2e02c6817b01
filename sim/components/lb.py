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

Which hosts a policy picks from (:class:`HostSelector`) follows Envoy's host
sources (source/common/upstream/load_balancer_impl.cc): normally the healthy
hosts (neither ejected by outlier detection nor failing active health
checks); in panic, when the healthy share is below ``healthy_panic_threshold``,
all hosts, with its own round-robin position. With every host healthy the
policy's own ``pick`` is used unchanged, so health support costs the
all-healthy path nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from sim.config.models import Cluster
from sim.engine import UniformStream


class RoundRobin:
    """Equal weights: cycle from a random start.

    Envoy keeps one position per host source, all seeded alike: ``_next`` is
    the healthy hosts' (all hosts while all are healthy), ``_panic_next`` the
    all-hosts source used in panic.
    """

    __slots__ = ("n", "_next", "_panic_next")

    def __init__(self, n: int, uniform: UniformStream):
        self.n = n
        self._next = self._panic_next = int(uniform() * n)

    def pick(self) -> int:
        """Index of the next host of the healthy source's cycle."""
        i = self._next
        self._next = i + 1 if i + 1 < self.n else 0
        return i

    def pick_panic(self) -> int:
        """Index of the next host of the all-hosts (panic) source's cycle."""
        i = self._panic_next
        self._panic_next = i + 1 if i + 1 < self.n else 0
        return i


class _RoundRobinOver:
    """Round robin over a subset of the hosts, continuing the healthy source's position."""

    __slots__ = ("rr", "hosts", "m")

    def __init__(self, rr: RoundRobin, hosts: list[int]):
        self.rr = rr
        self.hosts = hosts
        self.m = len(hosts)

    def pick(self) -> int:
        rr = self.rr
        i = rr._next
        rr._next = i + 1
        return self.hosts[i % self.m]


class RandomPick:
    """Envoy's RANDOM policy: each pick a uniformly random host, no state."""

    __slots__ = ("n", "uniform")

    def __init__(self, n: int, uniform: UniformStream):
        self.n = n
        self.uniform = uniform

    def pick(self) -> int:
        """Index of a host drawn uniformly from all ``n``."""
        return int(self.uniform() * self.n)


class _RandomOver:
    __slots__ = ("uniform", "hosts", "m")

    def __init__(self, uniform: UniformStream, hosts: list[int]):
        self.uniform = uniform
        self.hosts = hosts
        self.m = len(hosts)

    def pick(self) -> int:
        return self.hosts[int(self.uniform() * self.m)]


class LeastRequest:
    """Power of ``choice_count`` choices on ``active`` (equal weights)."""

    __slots__ = ("n", "uniform", "active", "choice_count")

    def __init__(self, n: int, uniform: UniformStream, active: list[int], choice_count: int = 2):
        self.n = n
        self.uniform = uniform
        self.active = active
        self.choice_count = choice_count

    def pick(self) -> int:
        """Index of the host with the fewest active requests among ``choice_count`` sampled.

        Samples are uniform with replacement; the first sampled wins ties
        (Envoy's ``unweightedHostPick``).
        """
        u = self.uniform
        n = self.n
        active = self.active
        best = int(u() * n)
        for _ in range(self.choice_count - 1):
            j = int(u() * n)
            if active[j] < active[best]:
                best = j
        return best


class _LeastRequestOver:
    """P2C among a subset of the hosts (Envoy samples from the source's host list)."""

    __slots__ = ("uniform", "active", "choice_count", "hosts", "m")

    def __init__(self, lr: LeastRequest, hosts: list[int]):
        self.uniform = lr.uniform
        self.active = lr.active
        self.choice_count = lr.choice_count
        self.hosts = hosts
        self.m = len(hosts)

    def pick(self) -> int:
        u = self.uniform
        m = self.m
        hosts = self.hosts
        active = self.active
        best = hosts[int(u() * m)]
        for _ in range(self.choice_count - 1):
            j = hosts[int(u() * m)]
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

    def __init__(self, n: int, weight_of, hosts: Sequence[int] | None = None):
        self.weight_of = weight_of
        self.now = 0.0
        self._order = 0
        self._heap: list[tuple[float, int, int]] = []
        for i in (range(n) if hosts is None else hosts):
            self._add(i)

    def _add(self, i: int) -> None:
        self._order += 1
        heapq.heappush(self._heap, (self.now + 1.0 / self.weight_of(i), self._order, i))

    def pick(self) -> int:
        """Index of the host with the earliest deadline; it is re-added with its weight as of now."""
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


class HostSelector:
    """A cluster's policy and the hosts it currently picks from.

    ``pick`` is what the router calls. :meth:`use` switches it: ``hosts=None``
    (every host healthy) gives back the policy's own ``pick``; a list of host
    indices restricts picks to them; ``panic`` picks from every host through
    the all-hosts source. Envoy rebuilds its EDF schedules whenever an update
    of the host set reaches the worker (for health changes, after the
    cluster's update merge window: see :class:`sim.components.health.HostHealth`),
    so an EDF policy is rebuilt on every switch; round robin keeps its
    positions; random and P2C keep no state.
    """

    __slots__ = ("policy", "n", "pick")

    def __init__(self, config: Cluster, weights: Sequence[int], active: list[int], uniform: UniformStream):
        self.policy = make_policy(config, weights, active, uniform)
        self.n = len(weights)
        self.pick = self.policy.pick

    def use(self, hosts: list[int] | None, panic: bool = False):
        """Pick from ``hosts`` (None: all, all healthy) or from all hosts in panic; returns the new ``pick``."""
        policy = self.policy
        if hosts is not None and not hosts:
            raise ValueError("no host to pick from")
        if isinstance(policy, Edf):
            if hosts is None or panic:
                self.policy = policy = Edf(self.n, policy.weight_of)
                self.pick = policy.pick
            else:
                self.pick = Edf(len(hosts), policy.weight_of, hosts).pick
        elif isinstance(policy, RoundRobin):
            policy._next %= self.n  # back from a subset, whose position ran past n
            if panic:
                self.pick = policy.pick_panic
            elif hosts is None:
                self.pick = policy.pick
            else:
                self.pick = _RoundRobinOver(policy, hosts).pick
        elif panic or hosts is None:
            self.pick = policy.pick
        elif isinstance(policy, LeastRequest):
            self.pick = _LeastRequestOver(policy, hosts).pick
        else:
            self.pick = _RandomOver(policy.uniform, hosts).pick
        return self.pick
