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

Counts (measurement window): ``connections`` per gateway instance.
"""

from __future__ import annotations

from sim.config.models import Balancer
from sim.engine import SimContext, UniformStream

from .network import INTERNET
from .request import Request


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
        self.links_to = [network.link(az, g.az) for g in targets]
        self.links_from = [network.link(g.az, az) for g in targets]
        self.reset()

    def reset(self) -> None:
        self.connections = [0] * self.n

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

    def accept(self, req: Request) -> None:
        """A client's request reaches this node (a scheduled callback)."""
        i = self._pick()
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
    """A region's balancer: its nodes, keyed by AZ."""

    def __init__(self, ctx: SimContext, name: str, config: Balancer, gateways_by_az: dict[str, list], network):
        self.name = name
        self.config = config
        all_gateways = [g for az in sorted(gateways_by_az) for g in gateways_by_az[az]]
        self.nodes: dict[str, BalancerNode] = {}
        for az in sorted(gateways_by_az):
            targets = all_gateways if config.cross_zone else gateways_by_az[az]
            self.nodes[az] = BalancerNode(ctx, f"{name}.{az}", config, az, targets, network)

    def reset(self) -> None:
        for node in self.nodes.values():
            node.reset()
