"""The regional L4 balancer: one node per AZ that holds gateways.

A client connects to one node of its region's balancer (DNS answers with
every node; the client picks one uniformly). The node forwards the
connection to a gateway instance by ``policy`` (``round_robin``, ``random``
or ``least_connections``), among the instances in its own AZ when
``cross_zone`` is off, or in every AZ of the region when it is on. Each node
keeps its own state, as real balancer nodes do.

Responses pass back through the node. To save an event per request the node
forwards a response in one step over both hops (gateway to node, node to
client), counting bytes on each; a least-connections count is therefore
released when the response reaches the client, one hop after the node saw it.

A node skips gateways that are down (``up`` False: crashed by a fault).
Round robin moves on to the next one up, random re-picks uniformly among
those up, least connections takes the least busy of those up. If none of
its targets is up the node answers at once with 503
(``no_healthy_upstream``). A node is itself down (``up`` False) during an
outage of its AZ: clients stop choosing it, and a request that reaches it
anyway gets ``gateway_reset`` (its connection fails). A simplification:
responses of requests that passed a node before it went down are still
delivered through it (with ``cross_zone`` on, from gateways in other AZs).

Counts (measurement window): ``connections`` per gateway instance,
``no_healthy`` requests answered 503 for want of a gateway up, ``refused``
requests that reached the node while it was down.
"""

from __future__ import annotations

from sim.config.models import Balancer
from sim.engine import SimContext, UniformStream

from .network import BALANCER_GATEWAY, INTERNET
from .request import GATEWAY_RESET, LOCAL_REPLY_BYTES, NO_HEALTHY_UPSTREAM, Request


class BalancerNode:
    """The balancer's node in one AZ."""

    def __init__(self, ctx: SimContext, name: str, config: Balancer, az: str, targets: list, network):
        if not targets:
            raise ValueError(f"balancer node {name} has no gateway to forward to")
        self.ctx = ctx
        self.env = ctx.env
        self._later = ctx.call_later
        self.name = name
        self.az = az
        self.up = True  # False during an AZ outage: clients stop connecting here
        self.policy = config.policy
        self.targets = targets
        self.n = len(targets)
        self.uniform = UniformStream(ctx.rng(f"{name}.pick"))
        self.active = [0] * self.n
        self._rr = int(self.uniform() * self.n)
        self.link_in = network.link(INTERNET, az)
        self.link_out = network.link(az, INTERNET)
        self.links_to = [network.link(az, g.az, BALANCER_GATEWAY) for g in targets]
        self.links_from = [network.link(g.az, az, BALANCER_GATEWAY) for g in targets]
        self.reset()

    def reset(self) -> None:
        """Start the measurement window of the counters now (called at the end of the warm-up)."""
        self.connections = [0] * self.n
        self.no_healthy = 0
        self.refused = 0

    def results(self) -> dict:
        """Result hook: connections handed to each target, no-healthy-gateway replies, refusals."""
        return {"connections": sum(self.connections), "no_healthy": self.no_healthy, "refused": self.refused}

    def _pick(self) -> int:
        if self.policy == "round_robin":
            i = self._rr
            self._rr = i + 1 if i + 1 < self.n else 0
            return i
        if self.policy == "random":
            return int(self.uniform() * self.n)
        # least_connections: the fewest active, scanning from a rotating start so
        # that ties are shared round-robin (as HAProxy's leastconn does).
        active = self.active
        start = self._rr
        self._rr = start + 1 if start + 1 < self.n else 0
        best = start
        low = active[start]
        n = self.n
        for k in range(1, n):
            j = start + k
            if j >= n:
                j -= n
            if active[j] < low:
                best, low = j, active[j]
        return best

    def _pick_up(self) -> int:
        """:meth:`_pick` chose a target that is down: pick among those up (-1: none is)."""
        targets = self.targets
        n = self.n
        if self.policy == "round_robin":
            for _ in range(n - 1):
                j = self._rr
                self._rr = j + 1 if j + 1 < n else 0
                if targets[j].up:
                    return j
            return -1
        ups = [j for j in range(n) if targets[j].up]
        if not ups:
            return -1
        if self.policy == "random":
            return ups[int(self.uniform() * len(ups))]
        # least_connections: the same scan as _pick's, from the start it used, over those up.
        start = self._rr - 1 if self._rr > 0 else n - 1
        active = self.active
        best, low = -1, 0
        for k in range(n):
            j = start + k
            if j >= n:
                j -= n
            if targets[j].up and (best < 0 or active[j] < low):
                best, low = j, active[j]
        return best

    def _local_reply(self, req: Request, outcome: str, nbytes: float) -> None:
        """Answer ``req`` from the node itself, back over the client's hop."""
        req.lb_node = self
        req.outcome = outcome
        req.resp_bytes = nbytes
        out = self.link_out
        out.bytes += nbytes
        out.messages += 1
        self._later(out.draw(), self._locally_answered, req)

    def _locally_answered(self, req: Request) -> None:
        req.client.on_response(req)

    def accept(self, req: Request) -> None:
        """A client's request reaches this node (a scheduled callback)."""
        if not self.up:
            self.refused += 1
            self._local_reply(req, GATEWAY_RESET, 0.0)
            return
        i = self._pick()
        if not self.targets[i].up:
            i = self._pick_up()
            if i < 0:
                self.no_healthy += 1
                self._local_reply(req, NO_HEALTHY_UPSTREAM, LOCAL_REPLY_BYTES)
                return
        self.active[i] += 1
        self.connections[i] += 1
        req.lb_node = self
        req.lb_index = i
        self.links_to[i].send(req.req_bytes, self.targets[i].accept, req)

    def respond(self, req: Request) -> None:
        """Carry a response from its gateway back to the client."""
        back = self.links_from[req.lb_index]
        out = self.link_out
        nbytes = req.resp_bytes
        back.bytes += nbytes
        back.messages += 1
        out.bytes += nbytes
        out.messages += 1
        self._later(back.draw() + out.draw(), self._delivered, req)

    def _delivered(self, req: Request) -> None:
        self.active[req.lb_index] -= 1
        req.client.on_response(req)


class RegionalBalancer:
    """A region's balancer: its nodes, keyed by AZ.

    Args:
        targets_by_az: each node's AZ and the gateways it forwards to, in
            order (the fleet's component graph decides them: the node's own
            AZ only, or every AZ of the region with ``cross_zone``).
        node_class: what each node is (default :class:`BalancerNode`).
    """

    def __init__(self, ctx: SimContext, name: str, config: Balancer, targets_by_az: dict[str, list], network,
                 node_class=None):
        self.name = name
        self.config = config
        self.nodes: dict[str, BalancerNode] = {}
        make = node_class or BalancerNode  # a ConnectionNode when clients hold connections
        for az, targets in targets_by_az.items():
            self.nodes[az] = make(ctx, f"{name}.{az}", config, az, targets, network)

    def reset(self) -> None:
        """Start every node's measurement window now (called at the end of the warm-up)."""
        for node in self.nodes.values():
            node.reset()


class DirectEntry:
    """Clients that talk straight to gateway instances: no regional balancer in between.

    A region whose clients name ``gateway_pools`` instead of going through a
    balancer: DNS answers with every gateway instance of those pools and each
    try goes to one of them, uniformly at random (among those up), over the
    internet hop to the gateway's AZ; the answer comes back the same way. It
    stands where a balancer node stands for the client (``up``, ``link_in``,
    ``accept`` through ``link_in.send_at``) and for the gateway
    (``respond``), and adds no hop of its own. If no target is up, the try
    fails with ``gateway_reset`` after the client's round trip (nobody
    answers the connection).

    Counts (measurement window): ``connections`` per gateway instance;
    ``no_healthy`` tries that found no gateway up.
    """

    def __init__(self, ctx: SimContext, name: str, targets: list, network):
        if not targets:
            raise ValueError(f"{name}: no gateway to send to")
        self.ctx = ctx
        self._later = ctx.call_later
        self._at = ctx.call_at
        self.name = name
        self.az = INTERNET
        self.up = True  # DNS always answers; a gateway that is down refuses the connection
        self.targets = targets
        self.n = len(targets)
        self.uniform = UniformStream(ctx.rng(f"{name}.pick"))
        self.links_in = [network.link(INTERNET, g.az) for g in targets]
        self.links_out = [network.link(g.az, INTERNET) for g in targets]
        self.link_in = self  # the client sends through send_at below
        self.refused = 0
        self.reset()

    def reset(self) -> None:
        """Start the measurement window now."""
        self.connections = [0] * self.n
        self.no_healthy = 0

    def results(self) -> dict:
        """Result hook: connections handed to the gateways, tries that found none up."""
        return {"connections": sum(self.connections), "no_healthy": self.no_healthy, "refused": self.refused}

    def send_at(self, t: float, nbytes: float, _accept, req: Request) -> None:
        """The client's try leaves at time ``t``: pick its gateway and put it on the wire."""
        i = int(self.uniform() * self.n)
        if not self.targets[i].up:
            ups = [j for j in range(self.n) if self.targets[j].up]
            if not ups:
                self.no_healthy += 1
                req.lb_node = self
                req.outcome = GATEWAY_RESET
                req.resp_bytes = 0.0
                link = self.links_in[i]
                self._at(t + 2 * link.draw(), self._answered, req)
                return
            i = ups[int(self.uniform() * len(ups))]
        self.connections[i] += 1
        req.lb_node = self
        req.lb_index = i
        self.links_in[i].send_at(t, nbytes, self.targets[i].accept, req)

    def accept(self, req: Request) -> None:
        """Never called: :meth:`send_at` hands each try to its gateway (clients pass it as the callback)."""
        raise RuntimeError(f"{self.name}: a try reached the direct entry itself")

    def respond(self, req: Request) -> None:
        """Carry a response from its gateway back to the client."""
        self.links_out[req.lb_index].send(req.resp_bytes, self._answered, req)

    def _answered(self, req: Request) -> None:
        req.client.on_response(req)
