"""Client connections through the L4 balancer, with TLS handshakes and session resumption.

Built only when the experiment sets ``workload.connections``
(:class:`~sim.config.models.ClientConnections`). Each balancer node becomes
a :class:`ConnectionNode`: it keeps ``clients`` clients, each holding up to
``connections_per_client`` connections to gateway instances. A request
reaching the node goes to one client (uniformly, stream
``<node>.conn.client``), which sends it on an open connection with room or
opens a new one; only a new connection is balanced (round robin, random or
least connections, counting open connections), as an L4 balancer balances
connections, not requests.

A new connection costs round trips before its first request reaches the
gateway (TCP: 1; TLS 1.2: 2 more for a full handshake, 1 resumed; TLS 1.3:
1 more), each a client-gateway round trip drawn from the network's
distributions on the node's own streams (``<balancer>.conn<k>.rtt.*``). Requests
given to a connection still opening wait until it is ready. The handshake
is full or resumed by :meth:`sim.components.tls.tickets.TicketKeys.handshake`;
the first request carries its kind to the gateway, whose worker spends the
handshake's CPU (:class:`sim.components.gateway_cpu.AccountedGateway`).

A connection closes (and its client will reconnect on its next request)
after its requests (``requests_per_connection``), when idle for the idle
timeout (found so by its client's next request; with least connections, whose
counts need it on time, by a timer), past ``max_connection_duration_s``, when its gateway drains (a
rolling restart, :class:`ConnectionLayer`) or is found down (crashed). A
connection still carrying requests closes when the last one is answered.

Counts (measurement window), per gateway instance: connections opened,
handshakes by kind, full handshakes by reason, connections closed by cause;
per second (whole run), full and resumed handshakes per pool.
"""

from __future__ import annotations

import math

from sim.components.balancer import BalancerNode
from sim.components.request import GATEWAY_RESET, LOCAL_REPLY_BYTES, NO_HEALTHY_UPSTREAM
from sim.config.models import ClientConnections
from sim.engine import Sampler, SimContext, UniformStream

from .tickets import FULL, REASONS, TicketKeys, offered_after, scope_domains

#: Why connections close.
CLOSE_CAUSES = ("requests", "idle", "max_duration", "drain", "gateway_down")

#: Round trips of each handshake before the first request, TCP's included.
_ROUND_TRIPS = {("TLSv1_2", "full"): 3, ("TLSv1_2", "resumed"): 2,
                ("TLSv1_3", "full"): 2, ("TLSv1_3", "resumed"): 2, (None, None): 1}


class Connection:
    """One client connection to a gateway instance."""

    __slots__ = ("node", "client", "target", "gateway", "left", "inflight", "opened_s", "last_s", "ready_s",
                 "closing", "open")

    def __init__(self, node, client, target: int, gateway, left: int, now: float, ready_s: float):
        self.node = node  # the balancer node it passes through
        self.client = client
        self.target = target  # index in the node's targets
        self.gateway = gateway
        self.left = left  # requests it may still carry
        self.inflight = 0
        self.opened_s = now
        self.last_s = now
        self.ready_s = ready_s
        self.closing = None  # a CLOSE_CAUSES entry once it takes no more requests
        self.open = True


class Client:
    """A client: its connections and the ticket it would offer."""

    __slots__ = ("conns", "ticket")

    def __init__(self):
        self.conns: list[Connection] = []
        self.ticket = None


class GatewayConnStats:
    """One gateway instance's connection counters (measurement window)."""

    __slots__ = ("opened", "full", "resumed", "plain", "reasons", "closed", "open_now")

    def __init__(self):
        self.open_now = 0
        self.reset()

    def reset(self) -> None:
        """Start the window now."""
        self.opened = 0
        self.full = 0
        self.resumed = 0
        self.plain = 0
        self.reasons = dict.fromkeys(REASONS, 0)
        self.closed = dict.fromkeys(CLOSE_CAUSES, 0)

    def results(self) -> dict:
        """Counters as a dict."""
        return {"connections_opened": self.opened, "full": self.full, "resumed": self.resumed,
                "plain": self.plain, "full_reasons": dict(self.reasons), "closed": dict(self.closed),
                "open_at_end": self.open_now}


class ConnectionLayer:
    """The fleet's connection state shared by every node: ticket keys, drains, counters.

    Args:
        ctx: simulation context.
        name: ``connections``.
        config: the workload's ``connections``.
        pools: pool name -> (its validated model, its instances, each instance's (az, region)).
    """

    def __init__(self, ctx: SimContext, name: str, config: ClientConnections, pools: dict):
        self.ctx = ctx
        self.env = ctx.env
        self.name = name
        self.config = config
        idle = config.idle_timeout_s
        if config.balancer_idle_timeout_s is not None:
            idle = min(idle, config.balancer_idle_timeout_s)
        self.idle_s = idle
        self.capacity = 1 if config.http_protocol == "http1" else config.max_concurrent_streams
        self.keys: dict[int, TicketKeys | None] = {}  # id(gateway) -> its pool's keys (None: plain TCP)
        self.pool_of: dict[int, str] = {}
        self.stats: dict[int, GatewayConnStats] = {}
        self.gateways: dict[str, list] = {}
        self.draining: set[int] = set()  # gateways taking no new connections
        self._nodes_of: dict[str, int] = {}  # balancer -> its nodes built so far (stream names)
        self.open: dict[int, set] = {}  # id(gateway) -> its open connections
        n = max(1, math.ceil(ctx.duration_s))
        self.full_ts: dict[str, list[int]] = {}
        self.resumed_ts: dict[str, list[int]] = {}
        generations: dict[str, int] = {}  # key domain -> generation, fleet-wide
        for pool, (model, insts, places) in pools.items():
            self.gateways[pool] = insts
            keys = None
            if model.tls is not None:
                named = [(g.name, az, region) for g, (az, region) in zip(insts, places, strict=True)]
                keys = TicketKeys(pool, model.tls, scope_domains(model.tls.session_ticket_keys_scope, named),
                                  generations)
            self.full_ts[pool] = [0] * n
            self.resumed_ts[pool] = [0] * n
            for g in insts:
                self.keys[id(g)] = keys
                self.pool_of[id(g)] = pool
                self.stats[id(g)] = GatewayConnStats()
                self.open[id(g)] = set()
                if hasattr(g, "on_restart"):
                    g.on_restart.append(self.restarted)

    def reset(self) -> None:
        """Start the measurement window now."""
        for s in self.stats.values():
            s.reset()

    def stream_prefix(self, node_name: str) -> str:
        """Random-stream prefix of the balancer node ``node_name`` (``lb.<region>.<az>``).

        ``<balancer>.conn<k>``, k counting the balancer's nodes in build order.
        """
        balancer = node_name.rsplit(".", 1)[0]
        k = self._nodes_of.get(balancer, 0)
        self._nodes_of[balancer] = k + 1
        return f"{balancer}.conn{k}"

    # -- connection life
    def handshake(self, client: Client, gateway, now: float) -> tuple[str | None, float]:
        """Decide a new connection's handshake: ``(kind or None for plain TCP, round trips)``."""
        keys = self.keys[id(gateway)]
        st = self.stats[id(gateway)]
        st.opened += 1
        st.open_now += 1
        if keys is None:
            st.plain += 1
            return None, _ROUND_TRIPS[(None, None)]
        kind, reason, new = keys.handshake(client.ticket, gateway.name, now)
        client.ticket = offered_after(self.config.ticket_policy, client.ticket, new, now, keys.lifetime_s)
        sec = int(now)
        pool = self.pool_of[id(gateway)]
        if kind == FULL:
            st.full += 1
            st.reasons[reason] += 1
            if sec < len(self.full_ts[pool]):
                self.full_ts[pool][sec] += 1
        else:
            st.resumed += 1
            if sec < len(self.resumed_ts[pool]):
                self.resumed_ts[pool][sec] += 1
        return kind, _ROUND_TRIPS[(keys.tls.tls_version, kind)]

    def closed(self, conn: Connection) -> None:
        """``conn`` closed (its cause is ``conn.closing``)."""
        st = self.stats[id(conn.gateway)]
        st.open_now -= 1
        st.closed[conn.closing] += 1
        self.open[id(conn.gateway)].discard(conn)

    # -- rolling restarts (sim.fleet.faults hands them here)
    def drain(self, gateway) -> None:
        """``gateway`` drains: it takes no new connection; its connections close after their requests."""
        self.draining.add(id(gateway))
        for conn in sorted(self.open[id(gateway)], key=lambda c: c.opened_s):
            if conn.closing is None:
                conn.closing = "drain"
            if conn.inflight == 0:
                conn.node.close(conn)

    def restarted(self, gateway) -> None:
        """``gateway``'s process (re)started: keys it made itself and its cache are new."""
        keys = self.keys[id(gateway)]
        if keys is not None:
            keys.restart(gateway.name)

    def ready(self, gateway) -> None:
        """``gateway`` takes connections again."""
        self.draining.discard(id(gateway))

    def results(self) -> dict:
        """Per pool: the summed counters, per instance, and the per-second handshake series."""
        out = {}
        for pool, insts in self.gateways.items():
            rows = [self.stats[id(g)].results() for g in insts]
            total: dict = {}
            for r in rows:
                for k, v in r.items():
                    if isinstance(v, dict):
                        d = total.setdefault(k, {})
                        for kk, vv in v.items():
                            d[kk] = d.get(kk, 0) + vv
                    else:
                        total[k] = total.get(k, 0) + v
            out[pool] = {"tls": self.keys[id(insts[0])] is not None, "instances": len(insts), **total,
                         "per_instance": {g.name: r for g, r in zip(insts, rows, strict=True)},
                         "full_ts": self.full_ts[pool], "resumed_ts": self.resumed_ts[pool]}
        return out


class ConnectionNode(BalancerNode):
    """A balancer node whose clients hold connections (see the module's docstring).

    ``active`` counts open connections per target (least connections balances them).
    """

    def __init__(self, ctx: SimContext, name: str, config, az: str, targets: list, network, layer: ConnectionLayer):
        super().__init__(ctx, name, config, az, targets, network)
        self.layer = layer
        cfg = layer.config
        self.clients = [Client() for _ in range(cfg.clients)]
        # Streams named after the balancer and the node's place in it, not its AZ: renaming AZs
        # (in their order) moves no draw.
        prefix = layer.stream_prefix(name)
        self._client_u = UniformStream(ctx.rng(f"{prefix}.client"))
        self._reqs = Sampler(cfg.requests_per_connection, ctx.rng(f"{prefix}.requests"))
        net = network.config
        self._internet = Sampler(net.internet_s, ctx.rng(f"{prefix}.rtt.internet"))
        self._hop = {}
        for g in targets:
            rel = network.relation(az, g.az)
            if rel not in self._hop:
                self._hop[rel] = Sampler(getattr(net, f"{rel}_s"), ctx.rng(f"{prefix}.rtt.{rel}"))
        self._rel = [network.relation(az, g.az) for g in targets]
        self.per_client = cfg.connections_per_client
        self.capacity = layer.capacity
        self.max_age = cfg.max_connection_duration_s
        # An idle connection closes when its client next finds it idle; least connections
        # balances on open connections, so there a timer closes it on time (one event per idle spell).
        self._idle_timers = config.policy == "least_connections"

    def _usable(self, j: int) -> bool:
        t = self.targets[j]
        return t.up and id(t) not in self.layer.draining

    def _pick_open(self) -> int:
        """The target for a new connection among those up and not draining (-1: none)."""
        i = self._pick()
        if self._usable(i):
            return i
        n = self.n
        if self.policy == "round_robin":
            for _ in range(n - 1):
                j = self._rr
                self._rr = j + 1 if j + 1 < n else 0
                if self._usable(j):
                    return j
            return -1
        ok = [j for j in range(n) if self._usable(j)]
        if not ok:
            return -1
        if self.policy == "random":
            return ok[int(self.uniform() * len(ok))]
        start = self._rr - 1 if self._rr > 0 else n - 1
        best, low = -1, 0
        for k in range(n):
            j = start + k
            if j >= n:
                j -= n
            if self._usable(j) and (best < 0 or self.active[j] < low):
                best, low = j, self.active[j]
        return best

    def _stale(self, conn: Connection, now: float) -> str | None:
        """Why ``conn`` takes no more requests now, or None."""
        if conn.closing is not None:
            return conn.closing
        if not conn.gateway.up:
            return "gateway_down"
        if id(conn.gateway) in self.layer.draining:
            return "drain"
        if conn.inflight == 0 and now - conn.last_s >= self.layer.idle_s:
            return "idle"
        if self.max_age is not None and now - conn.opened_s >= self.max_age:
            return "max_duration"
        return None

    def close(self, conn: Connection) -> None:
        """Close ``conn`` now (no request on it)."""
        if not conn.open:
            return
        conn.open = False
        self.active[conn.target] -= 1
        conn.client.conns.remove(conn)
        self.layer.closed(conn)

    def accept(self, req) -> None:
        """A client's request reaches this node: send it on one of its client's connections."""
        if not self.up:
            self.refused += 1
            self._local_reply(req, GATEWAY_RESET, 0.0)
            return
        now = self.env._now
        client = self.clients[int(self._client_u() * len(self.clients))]
        conn = None
        least = None
        stale = None
        for c in client.conns:
            why = self._stale(c, now)
            if why is not None:
                c.closing = why
                if c.inflight == 0:
                    if stale is None:
                        stale = [c]
                    else:
                        stale.append(c)
                continue
            if c.inflight < self.capacity:
                conn = c
                break
            if least is None or c.inflight < least.inflight:
                least = c
        if stale is not None:
            for c in stale:
                self.close(c)
        wait = 0.0
        if conn is None and (least is None or len(client.conns) < self.per_client):
            i = self._pick_open()
            if i < 0:
                self.no_healthy += 1
                self._local_reply(req, NO_HEALTHY_UPSTREAM, LOCAL_REPLY_BYTES)
                return
            gw = self.targets[i]
            kind, trips = self.layer.handshake(client, gw, now)
            rtt = 2.0 * (self._internet.draw() + self._hop[self._rel[i]].draw())
            wait = trips * rtt
            conn = Connection(self, client, i, gw, max(1, math.ceil(self._reqs.draw())), now, now + wait)
            client.conns.append(conn)
            self.layer.open[id(gw)].add(conn)
            self.active[i] += 1
            req.handshake = kind
        else:
            if conn is None:
                conn = least
            req.handshake = None
        conn.left -= 1
        if conn.left <= 0:
            conn.closing = "requests"
        conn.inflight += 1
        conn.last_s = now
        i = conn.target
        self.connections[i] += 1
        req.lb_node = self
        req.lb_index = i
        req.conn = conn
        # It leaves when its connection is ready (now, or when the handshake under way completes).
        self.links_to[i].send_at(conn.ready_s if conn.ready_s > now else now, req.req_bytes, self.targets[i].accept, req)

    def _delivered(self, req) -> None:
        conn = req.conn
        conn.inflight -= 1
        now = self.env._now
        conn.last_s = now
        if conn.inflight == 0:
            if conn.closing is not None:
                self.close(conn)
            elif self._idle_timers:
                self._later(self.layer.idle_s, self._idle_check, (conn, now))
        req.client.on_response(req)

    def _idle_check(self, arg) -> None:
        conn, since = arg
        if conn.open and conn.inflight == 0 and conn.last_s == since:
            conn.closing = "idle"
            self.close(conn)


__all__ = ["CLOSE_CAUSES", "Client", "Connection", "ConnectionLayer", "ConnectionNode"]
