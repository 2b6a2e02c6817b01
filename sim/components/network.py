"""Network hops: latency by AZ relation, bytes by (source AZ, destination AZ).

Every hop is a :class:`Link` from one place to another, where a place is an
AZ name or ``internet`` (clients). A link draws its one-way latency (seconds)
from the distribution of its relation (same AZ, cross-AZ, cross-region,
internet) in :class:`sim.config.Network`, from its own random stream, and
counts the bytes sent over it. Byte counts are for the measurement window:
they restart at the end of the warm-up.
"""

from __future__ import annotations

from collections.abc import Callable

from sim.config.models import Network as NetworkConfig
from sim.engine import Sampler, SimContext

INTERNET = "internet"

# What a byte is for (its purpose). Every link carries one purpose; links of
# one pair share the pair's latency stream, so the purpose changes no draw.
CLIENT = "client"
"""Client requests and responses between the internet and the fleet (a balancer node or a gateway)."""
BALANCER_GATEWAY = "balancer_gateway"
"""Client requests and responses between a balancer node and a gateway."""
GATEWAY_BACKEND = "gateway_backend"
"""Gateway tries to backends and their answers."""
HEALTH_CHECK = "health_check"
"""Active health-check probes and their answers."""
#: Calls from a gateway's rate-limit filter to Redis and their answers (sim.components.ratelimit).
GATEWAY_REDIS = "gateway_redis"
PURPOSES = (CLIENT, BALANCER_GATEWAY, GATEWAY_BACKEND, HEALTH_CHECK, GATEWAY_REDIS)


class Link:
    """A directed hop ``src -> dst``.

    Attributes:
        key: ``"src->dst"``, the key of ``bytes_by_az_pair``.
        relation: ``same_az``, ``cross_az``, ``cross_region`` or ``internet``.
        purpose: what its bytes are for (:data:`PURPOSES`, or another subsystem's name).
        bytes: bytes sent since the end of the warm-up.
        messages: messages sent since the end of the warm-up.
    """

    __slots__ = ("env", "later", "at", "key", "relation", "purpose", "draw", "bytes", "messages")

    def __init__(self, ctx: SimContext, key: str, relation: str, sampler: Sampler, purpose: str = CLIENT):
        self.env = ctx.env
        self.later = ctx.call_later
        self.at = ctx.call_at
        self.key = key
        self.relation = relation
        self.purpose = purpose
        self.draw = sampler.draw
        self.bytes = 0.0
        self.messages = 0

    def send(self, nbytes: float, callback: Callable, value) -> None:
        """Call ``callback(value)`` after the hop's latency."""
        self.bytes += nbytes
        self.messages += 1
        self.later(self.draw(), callback, value)

    def send_at(self, t: float, nbytes: float, callback: Callable, value) -> None:
        """Like :meth:`send`, for a message that leaves at time ``t`` (>= now): it arrives at ``t`` + latency."""
        self.bytes += nbytes
        self.messages += 1
        self.at(t + self.draw(), callback, value)

    def reset(self) -> None:
        """Start the measurement window of ``bytes`` and ``messages`` now."""
        self.bytes = 0.0
        self.messages = 0


class Network:
    """Makes and remembers the links between AZs (and the internet).

    Args:
        ctx: the simulation context.
        name: component name (``network``); link streams are ``network.<src>-><dst>``.
        config: the latency model.
        az_region: every AZ's region.
    """

    def __init__(self, ctx: SimContext, name: str, config: NetworkConfig, az_region: dict[str, str]):
        self.ctx = ctx
        self.name = name
        self.config = config
        self.az_region = dict(az_region)
        self.links: dict[tuple[str, str, str], Link] = {}
        self._samplers: dict[tuple[str, str], Sampler] = {}  # one latency stream per pair

    def relation(self, src: str, dst: str) -> str:
        """The hop's relation, which picks its latency distribution: ``internet``, ``same_az``, ``cross_az`` or ``cross_region``."""
        if INTERNET in (src, dst):
            return "internet"
        if src == dst:
            return "same_az"
        if self.az_region[src] == self.az_region[dst]:
            return "cross_az"
        return "cross_region"

    def link(self, src: str, dst: str, purpose: str = CLIENT) -> Link:
        """The link ``src -> dst`` for ``purpose`` (made on first use).

        Links of one pair share its latency stream (``network.<src>-><dst>``)
        and differ only in the purpose their bytes are counted under.
        """
        key = (src, dst, purpose)
        link = self.links.get(key)
        if link is None:
            for end in (src, dst):
                if end != INTERNET and end not in self.az_region:
                    raise ValueError(f"unknown AZ {end!r}")
            rel = self.relation(src, dst)
            sampler = self._samplers.get((src, dst))
            if sampler is None:
                dist = getattr(self.config, f"{rel}_s")
                sampler = self._samplers[(src, dst)] = Sampler(dist, self.ctx.rng(f"{self.name}.{src}->{dst}"))
            link = self.links[key] = Link(self.ctx, f"{src}->{dst}", rel, sampler, purpose)
        return link

    def reset(self) -> None:
        """Start every link's measurement window now (called at the end of the warm-up)."""
        for link in self.links.values():
            link.reset()

    def results(self) -> dict:
        """Result hook: per pair (``<src>-><dst>``), bytes, messages and AZ relation in the window."""
        out: dict[str, dict] = {}
        for link in self.links.values():
            row = out.get(link.key)
            if row is None:
                out[link.key] = {"bytes": link.bytes, "messages": link.messages, "relation": link.relation}
            else:
                row["bytes"] += link.bytes
                row["messages"] += link.messages
        return out

    def bytes_by_pair(self) -> dict[str, float]:
        """Bytes sent in the window per ``<src>-><dst>`` key, rounded to whole bytes, sorted by key.

        Links that carried no message in the window are left out.
        """
        rows = self.results()
        return {key: round(rows[key]["bytes"]) for key in sorted(rows) if rows[key]["messages"]}

    def bytes_by_purpose(self) -> dict[str, dict[str, float]]:
        """Bytes sent in the window per purpose and ``<src>-><dst>`` key (whole bytes, sorted)."""
        out: dict[str, dict[str, float]] = {}
        for link in sorted(self.links.values(), key=lambda lk: (lk.purpose, lk.key)):
            if link.messages:
                out.setdefault(link.purpose, {})[link.key] = round(link.bytes)
        return out
