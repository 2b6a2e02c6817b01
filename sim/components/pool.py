"""Upstream connection pools: HTTP/1.1 and HTTP/2, with Envoy's breakers.

One pool per gateway instance and cluster, holding each host's
connections. (Envoy keeps a pool per worker thread; fleetsim pools a
gateway's workers together.)

- HTTP/1.1 (``http1``, Envoy's default upstream protocol): a connection
  carries one request at a time and is reused when the response is complete.
  A try that is reset (per-try or route timeout, the host crashed) closes its
  connection.
- HTTP/2 (``http2``): a host's connections carry up to
  ``max_concurrent_streams`` requests each; a reset closes only its stream,
  unless the host itself reset (crash), which closes the connection.
- A try with no free connection opens one while the cluster has fewer than
  ``max_connections`` (otherwise upstream_cx_overflow), which costs a network
  round trip and fails with ``connect_failure`` after ``connect_timeout_s``
  if the round trip is longer, or after the round trip if the host is down
  then (it refuses the connection). While it waits for a connection the try is
  *pending*; beyond ``max_pending_requests`` pending tries, a try fails at
  once with 503 (``overflow_pending``, Envoy's upstream_rq_pending_overflow).
- When a connection frees, the host's oldest pending try takes it; when one
  closes, the oldest pending try of any host may open a new one.

Counts (measurement window): ``connects``, ``cx_overflow``,
``pending_overflow``, ``connect_timeouts``; ``cx_total`` and ``pending`` now.
"""

from __future__ import annotations

from collections import deque

from sim.config.models import Cluster

from .request import CONNECT_FAILURE, OVERFLOW_PENDING, UPSTREAM_RESET, Attempt

# Attempt.conn states.
PENDING = 0  # waiting for a free connection
CONNECTING = 1  # waiting for the connection opened for it
ON_CONNECTION = 2  # sent on a connection


class ConnectionPool:
    """A gateway's connections to one cluster's hosts.

    Args:
        ctx: simulation context (``call_later``).
        config: the cluster's settings (protocol, breakers, connect timeout).
        links_out, links_back: the network links to and from each host.
        send: ``send(attempt)`` puts a try on the wire once it has a connection.
        fail: ``fail(attempt, outcome)`` ends a try that could not get one.
    """

    def __init__(self, ctx, config: Cluster, links_out: list, links_back: list, send, fail):
        n = len(links_out)
        self._later = ctx.call_later
        self.http2 = config.http_protocol == "http2"
        self.max_streams = config.max_concurrent_streams
        self.streams_per_conn = self.max_streams if self.http2 else 1
        self.max_connections = config.circuit_breakers.max_connections
        self.max_pending = config.circuit_breakers.max_pending_requests
        self.connect_timeout_s = config.connect_timeout_s
        self.links_out = links_out
        self.links_back = links_back
        self._send = send
        self._fail = fail
        self.conns = [0] * n  # open connections per host
        self.busy = [0] * n  # HTTP/1.1: connections in use; HTTP/2: streams in use
        # Tries waiting for a connection, per host that ever had one: a dict, not a
        # deque per host, since a gateway of a large fleet has hundreds of hosts per
        # cluster and most never see a pending try.
        self.waiting: dict[int, deque[Attempt]] = {}
        self.cx_total = 0
        self.pending = 0
        self._epoch = 0  # bumped by close_all: connects begun before it are void
        self.reset()

    def reset(self) -> None:
        """Start the measurement window of the connect and overflow counters now."""
        self.connects = 0
        self.cx_overflow = 0
        self.pending_overflow = 0
        self.connect_timeouts = 0

    def results(self) -> dict:
        """Result hook: connects, connect timeouts, connection and pending overflows in the window."""
        return {"connects": self.connects, "connect_timeouts": self.connect_timeouts,
                "cx_overflow": self.cx_overflow, "pending_overflow": self.pending_overflow}

    def check_limits(self, ctx, tries: list[Attempt]) -> None:
        """Raise if a breaker's limit is exceeded now, or a count disagrees with the tries it serves.

        For tests, which call it at many instants of a run; nothing in a run
        calls it. Checked: ``max_connections`` (connections open and being
        opened, Envoy's upstream_cx_active plus those connecting),
        ``max_pending_requests`` (tries waiting for a connection); each
        host's requests (HTTP/1.1) or streams (HTTP/2) in use within what its
        open connections carry; and that these counts are the tries' own:
        ``pending`` is the tries waiting or connecting, each host's in-use
        count its tries on a connection, and ``cx_total`` the open
        connections plus the connects under way.

        Args:
            ctx: the simulation context (its scheduled calls show the connects under way).
            tries: every try of this pool's cluster in flight now (sent and not released).

        Raises:
            RuntimeError: naming each limit exceeded or count that disagrees.
        """
        problems = []
        if not 0 <= self.cx_total <= self.max_connections:
            problems.append(f"{self.cx_total} connections, limit max_connections {self.max_connections}")
        if not 0 <= self.pending <= self.max_pending:
            problems.append(f"{self.pending} pending tries, limit max_pending_requests {self.max_pending}")
        opening = sum(1 for callback in (self._connected, self._connect_timed_out)
                      for _, item in ctx.pending(callback) if item[2] == self._epoch)
        if self.cx_total != sum(self.conns) + opening:
            problems.append(f"cx_total {self.cx_total} != {sum(self.conns)} open + {opening} connecting")
        waiting = sum(1 for a in tries if a.conn in (PENDING, CONNECTING))
        if self.pending != waiting:
            problems.append(f"pending {self.pending} != {waiting} tries waiting for a connection")
        on_connection = [0] * len(self.conns)
        for a in tries:
            if a.conn == ON_CONNECTION:
                on_connection[a.host] += 1
            elif a.conn not in (PENDING, CONNECTING):
                problems.append(f"a try in flight to host {a.host} has no connection state ({a.conn!r})")
        for i, (busy, conns) in enumerate(zip(self.busy, self.conns, strict=True)):
            if conns < 0 or busy != on_connection[i] or busy > conns * self.streams_per_conn:
                problems.append(f"host {i}: {busy} in use ({on_connection[i]} tries on a connection) over "
                                f"{conns} connections of {self.streams_per_conn} streams")
        if problems:
            raise RuntimeError("connection pool: " + "; ".join(problems))

    def close_all(self) -> None:
        """Every connection is gone (the gateway crashed), those being opened too.

        Call it once every try has been released.
        """
        n = len(self.conns)
        self.conns = [0] * n
        self.busy = [0] * n
        self.waiting.clear()
        self.cx_total = 0
        self.pending = 0
        self._epoch += 1

    def _free(self, i: int) -> bool:
        if self.http2:
            return self.busy[i] < self.conns[i] * self.max_streams
        return self.busy[i] < self.conns[i]

    def acquire(self, i: int, attempt: Attempt) -> None:
        """Give ``attempt`` (to host ``i``) a connection, now or when one is ready."""
        if self.busy[i] < self.conns[i] * self.streams_per_conn:
            self.busy[i] += 1
            attempt.conn = ON_CONNECTION
            self._send(attempt)
            return
        if self.pending >= self.max_pending:
            self.pending_overflow += 1
            attempt.conn = None
            self._fail(attempt, OVERFLOW_PENDING)
            return
        self.pending += 1
        if self.cx_total < self.max_connections:
            attempt.conn = CONNECTING
            self._open(i, attempt)
        else:
            self.cx_overflow += 1
            attempt.conn = PENDING
            waiting = self.waiting.get(i)
            if waiting is None:
                waiting = self.waiting[i] = deque()
            waiting.append(attempt)

    def _open(self, i: int, attempt: Attempt) -> None:
        self.cx_total += 1
        self.connects += 1
        rtt = self.links_out[i].draw() + self.links_back[i].draw()
        if rtt > self.connect_timeout_s:
            self._later(self.connect_timeout_s, self._connect_timed_out, (i, attempt, self._epoch))
        else:
            self._later(rtt, self._connected, (i, attempt, self._epoch))

    def _connect_timed_out(self, item) -> None:
        if item[2] != self._epoch:
            return
        self.connect_timeouts += 1
        self._connect_failed(item)

    def _connect_failed(self, item) -> None:
        i, attempt, _ = item
        self.cx_total -= 1
        if attempt.conn == CONNECTING:  # else the try was abandoned meanwhile
            self.pending -= 1
            attempt.conn = None
            self._fail(attempt, CONNECT_FAILURE)
        self._wake_any()

    def _connected(self, item) -> None:
        i, attempt, epoch = item
        if epoch != self._epoch:
            return  # begun before the gateway crashed
        if not attempt.backend.up:
            # A host that is down refuses the connection (its reset is back
            # after the round trip): no connection, the try fails.
            self._connect_failed(item)
            return
        self.conns[i] += 1
        if attempt.conn == CONNECTING:
            self.pending -= 1
            self.busy[i] += 1
            attempt.conn = ON_CONNECTION
            self._send(attempt)
        self._serve(i)

    def _serve(self, i: int) -> None:
        """Hand host ``i``'s free connection capacity to its pending tries."""
        waiting = self.waiting.get(i)
        while waiting and self._free(i):
            attempt = waiting.popleft()
            if attempt.conn != PENDING:
                continue  # abandoned while pending
            self.pending -= 1
            self.busy[i] += 1
            attempt.conn = ON_CONNECTION
            self._send(attempt)

    def _wake_any(self) -> None:
        """A connection closed: let the oldest pending tries open new ones."""
        for i in sorted(self.waiting):  # in host order
            waiting = self.waiting[i]
            while waiting and self.cx_total < self.max_connections:
                attempt = waiting.popleft()
                if attempt.conn != PENDING:
                    continue
                attempt.conn = CONNECTING
                self._open(i, attempt)
            if self.cx_total >= self.max_connections:
                return

    def release(self, attempt: Attempt) -> None:
        """The try is over for the gateway (answered, timed out, or reset)."""
        state = attempt.conn
        attempt.conn = None
        if state == ON_CONNECTION:
            i = attempt.host
            self.busy[i] -= 1
            # An answered try has an outcome; an abandoned one may not.
            if attempt.abandoned or attempt.outcome in _HOST_RESET:
                self._close(i, attempt)
            if self.waiting and self.waiting.get(i):
                self._serve(i)
        elif state in (PENDING, CONNECTING):
            # Given up while waiting: a connection being opened for it will be
            # kept for the next try to this host.
            self.pending -= 1

    def _close(self, i: int, attempt: Attempt) -> None:
        """Close what a reset try leaves unusable."""
        host_reset = getattr(attempt, "outcome", None) in _HOST_RESET
        if self.http2:
            closed = 0
            if host_reset:
                # The host's connections are gone; keep only what the streams
                # still in use occupy until their own resets arrive.
                needed = -(-self.busy[i] // self.max_streams)
                closed = max(0, self.conns[i] - needed)
        else:
            # HTTP/1.1 cannot reuse a connection with a response half read,
            # nor one the host reset.
            closed = 1
        if closed:
            self.conns[i] -= closed
            self.cx_total -= closed
            self._wake_any()


_HOST_RESET = frozenset((UPSTREAM_RESET, CONNECT_FAILURE))
