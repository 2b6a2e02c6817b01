"""A real backend server for the reference fleet: the simulator's backend station over HTTP/1.1.

One process hosts one or more backend *instances*, each on its own port on
127.0.0.1, plus one admin port::

    python -m reference_gateway.backend --spec SPEC.json

prints ``READY <admin_port>`` once every port listens and runs until SIGTERM
or SIGINT. The spec (see :class:`BackendSpec`)::

    {"admin_port": 40001, "seed": 7,
     "instances": [{"name": "api-az1-0", "port": 40011, "workers": 4, "queue_limit": 100,
                    "service_time_s": {"dist": "exponential", "mean": 0.01},
                    "service_time_factor": 1.0, "error_probability": 0.0,
                    "response_bytes": 200}]}

Queueing model (that of :class:`sim.components.backend.BackendInstance`)
    An instance has ``workers`` service slots and ``queue_limit`` FIFO waiting
    slots. A request that finds every worker busy and the queue full is
    answered 503 at once (``rejected``). Otherwise it is served in arrival
    order: its service time is a draw of ``service_time_s`` times
    ``service_time_factor`` times the runtime fault factor (set by ``POST
    /fault``, read when the service starts), spent on a timer; then it is
    answered 500 with the current error probability, else 200 with
    ``response_bytes`` bytes of body. Every request is treated alike,
    Envoy's active health checks on ``/healthz`` included (they take a worker
    and a service time, as the simulator models them); they are also counted
    apart (``health_checks``). A request whose client disconnected while it
    waited is dropped when its turn comes (``abandoned``, no service time); one
    whose client left during service is served anyway (``wasted``), as in the
    simulator.

Randomness
    Instance ``i`` draws service times, a block at a time
    (:class:`sim.engine.sampling.Sampler`, the simulator's own sampler), from
    ``default_rng(SeedSequence(seed, spawn_key=(i,)))`` and its error coin from
    ``SeedSequence(seed, spawn_key=(i, 1))``, so a run is reproducible and
    the instances' streams are independent. As in the simulator, the coin is
    drawn only while the error probability is non-zero.

Timer overshoot
    A service is a ``loop.call_later``. uvloop arms libuv timers in whole
    milliseconds (the delay is rounded) from a loop clock cached once per
    iteration, so a timer fires up to ~1 ms early or late. For every service
    the instance records the elapsed time minus the requested delay, both
    measured with ``time.perf_counter`` (uvloop's ``loop.time()`` itself
    has 1 ms resolution), keeps the last :data:`OVERSHOOT_KEEP` samples and
    their running mean: the calibration of the simulator against this fleet
    reads them. ``busy_s`` and ``service_time_sum_s`` are elapsed times, so
    they include the overshoot; ``requested_service_s`` is the sum of the
    requested delays.

HTTP
    A minimal HTTP/1.1 server on ``asyncio.Protocol`` (uvloop when
    installed), with the wire format of :mod:`.http1`: keep-alive,
    pipelining (each connection answers in request order), ``Connection:
    close`` (HTTP/1.0 closes unless ``keep-alive``), ``Content-Length``
    bodies read and discarded. No chunked request bodies (501) and nothing
    else of HTTP: the peers are Envoy, HAProxy and the load generator.
    Responses are prebuilt bytes, so a request costs a header parse, a timer
    and a write.

Admin (same HTTP code, on ``admin_port``)
    - ``GET /ready`` -> 200 ``ok``.
    - ``GET /stats`` -> ``{"instances": {name: {...}}, "t": loop.time(),
      "window_s": seconds since start or the last reset}``; per instance see
      :meth:`Instance.stats`.
    - ``GET /overshoot`` -> ``{name: [seconds, ...]}``, oldest first, at most
      :data:`OVERSHOOT_KEEP` each.
    - ``POST /reset`` -> zero the counters and overshoot samples (gauges stay).
    - ``POST /fault`` with ``{"instances": [names] | null, "service_time_factor":
      f, "error_probability": p, "clear": true}`` (every key optional; ``null``
      or absent instances = all; ``clear`` restores the configured values,
      then any value given applies) -> 200 with the new fault state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from sim.config.distributions import Distribution
from sim.engine.sampling import Sampler, UniformStream

from .http1 import MAX_HEAD_BYTES, REASONS, HttpError, RequestHead, RequestParser, build_response
from .specs import load_json_spec

LOCALHOST = "127.0.0.1"
#: Overshoot samples kept per instance (the most recent).
OVERSHOOT_KEEP = 50_000
#: Body size of the 503 and 500 answers (bytes): the simulator's LOCAL_REPLY_BYTES.
ERROR_BODY_BYTES = 150
HEALTH_PATH = b"/healthz"
GATEWAY_HEADER = b"x-fleetsim-gateway"

Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]


# --------------------------------------------------------------------------- spec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstanceSpec(_Spec):
    """One backend instance: the physics of :class:`sim.config.models.Service`, one port."""

    name: Name
    port: Port
    workers: int = Field(ge=1)
    queue_limit: int = Field(ge=0, description="Waiting slots beyond the workers.")
    service_time_s: Distribution
    service_time_factor: float = Field(default=1.0, gt=0)
    error_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    response_bytes: int = Field(default=4096, ge=0, description="Body size of a 200 (bytes).")


class BackendSpec(_Spec):
    """The instances one process hosts and its admin port."""

    admin_port: Port
    seed: int = Field(default=0, ge=0)
    instances: list[InstanceSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> BackendSpec:
        names: set[str] = set()
        ports = {self.admin_port: "admin_port"}
        for i, inst in enumerate(self.instances):
            if inst.name in names:
                raise ValueError(f"instances.{i}.name: duplicate instance name {inst.name!r}")
            names.add(inst.name)
            if inst.port in ports:
                raise ValueError(f"instances.{i}.port: port {inst.port} is already used by {ports[inst.port]}")
            ports[inst.port] = f"instance {inst.name}"
        return self


def describe_error(exc: ValidationError) -> str:
    """A pydantic error as ``field.path: reason`` items, one per problem."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_spec(obj: Any) -> BackendSpec:
    """Validate a spec given as plain data; ValueError naming the field on bad input."""
    try:
        return BackendSpec.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(describe_error(exc)) from None


def load_spec(path: str | Path) -> dict:
    """Read and validate SPEC.json; the normalised spec as plain data.

    Raises:
        ValueError: naming the file and the field, on a missing or unreadable
            file, bad JSON or an invalid field.
    """
    spec = load_json_spec(path, parse_spec)
    return spec.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- HTTP


class Request:
    """One parsed request, waiting for its answer on its connection.

    ``response`` is set once, when the request is answered; ``service_s`` and
    ``armed`` (``perf_counter`` when its service timer was armed) while it is
    served. ``gateway`` is the raw ``x-fleetsim-gateway`` value (``b"-"``
    when absent); ``body`` is kept only for the admin port.
    """

    __slots__ = ("conn", "method", "path", "gateway", "close", "body", "response", "service_s", "armed")

    def __init__(self, conn: HttpConnection, method: bytes, path: bytes, gateway: bytes, close: bool,
                 body: bytes = b""):
        self.conn = conn
        self.method = method
        self.path = path
        self.gateway = gateway
        self.close = close
        self.body = body
        self.response: bytes | None = None


class Endpoint:
    """What a listening port serves: :meth:`handle` gets each request, in arrival order."""

    keep_body = False

    def __init__(self) -> None:
        self.conns: set[HttpConnection] = set()

    def handle(self, req: Request) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, answers them in request order.

    The endpoint answers a request (now or later) with :meth:`reply`; answers
    that come out of order wait until those before them are written.
    ``closed`` turns True when the peer goes away, so an instance can drop
    the requests still waiting in its queue. After a request with
    ``Connection: close`` (or one it cannot parse) nothing more is read.
    """

    __slots__ = ("endpoint", "handle", "transport", "parser", "pending", "closed")

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.handle = endpoint.handle
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(self._request, header=GATEWAY_HEADER, missing=b"-",
                                    keep_body=endpoint.keep_body, max_head=MAX_HEAD_BYTES)
        self.pending: deque[Request] = deque()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.endpoint.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pending.clear()
        self.endpoint.conns.discard(self)

    def data_received(self, data: bytes) -> None:
        """Pass each request these bytes complete to the endpoint; answer a malformed one and stop reading.

        Args:
            data: The bytes just read, split anywhere.
        """
        try:
            self.parser.feed(data)
        except HttpError as exc:
            self._fail(exc.status)

    def _request(self, head: RequestHead, body: bytes) -> None:
        """One whole request from the parser: queue it for its answer and hand it to the endpoint."""
        method, target, close, _, gateway = head
        req = Request(self, method, target.split(b"?", 1)[0], gateway, close, body)
        self.pending.append(req)
        self.handle(req)

    def _fail(self, status: int) -> None:
        """A request this server cannot parse: answer ``status`` after the ones before it, then close."""
        req = Request(self, b"", b"", b"-", True)
        self.pending.append(req)
        self.reply(req, build_response(status, REASONS[status].encode(), close=True, content_type="text/plain"))

    def reply(self, req: Request, data: bytes) -> None:
        """Answer ``req``: written now if every earlier request has been answered."""
        if self.closed:
            return
        req.response = data
        pending = self.pending
        if pending[0] is not req:
            return
        write = self.transport.write
        while pending and pending[0].response is not None:
            r = pending.popleft()
            write(r.response)
            if r.close:
                self.transport.close()
                self.closed = True
                pending.clear()
                return


# --------------------------------------------------------------------------- instance


class Instance(Endpoint):
    """One backend instance: ``workers`` servers and a FIFO queue of ``queue_limit`` slots.

    Counters (zeroed by :meth:`reset`): ``requests`` received, ``responses`` by
    status, ``served`` (services completed), ``rejected`` (503, queue full),
    ``abandoned`` (dropped from the queue, client gone), ``wasted`` (served to
    a client gone), ``health_checks`` (requests for ``/healthz``),
    ``by_gateway`` (requests by ``x-fleetsim-gateway``), ``busy_s``
    (worker-seconds spent serving since the reset, in-progress services up to
    now included), ``service_time_sum_s`` (elapsed seconds of the completed
    services), ``requested_service_s`` (their requested delays),
    ``max_queue``; overshoot samples and their running mean. Gauges:
    ``in_service``, ``queued`` (a queued request of a client gone counts until
    its turn).
    """

    def __init__(self, spec: InstanceSpec, index: int, seed: int):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.port = spec.port
        self.workers = spec.workers
        self.queue_limit = spec.queue_limit
        self._draw = Sampler(spec.service_time_s,
                             np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))).draw
        self._coin = UniformStream(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1))))
        ok = b"x" * spec.response_bytes
        err = b"e" * ERROR_BODY_BYTES
        # [status][close] -> the whole response, built once.
        self._answers = {status: (build_response(status, body), build_response(status, body, close=True))
                         for status, body in ((200, ok), (500, err), (503, err))}
        self._later: Callable[..., Any] | None = None
        self.queue: deque[Request] = deque()
        self.busy = 0
        # Sum of the arming times of the services in progress: with busy it
        # gives their elapsed time without a per-request set.
        self._armed_sum = 0.0
        self.fault_factor = 1.0
        self.error_probability = spec.error_probability
        self._factor = spec.service_time_factor
        self.overshoot: deque[float] = deque(maxlen=OVERSHOOT_KEEP)
        self.reset()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._later = loop.call_later

    # -- window
    def reset(self) -> None:
        """Zero the counters now; services in progress count from now on."""
        now = time.perf_counter()
        self.requests = 0
        self.responses = {200: 0, 500: 0, 503: 0}
        self.served = 0
        self.rejected = 0
        self.abandoned = 0
        self.wasted = 0
        self.health_checks = 0
        self.by_gateway: dict[bytes, int] = {}
        # What is in service now adds its whole elapsed time when it ends;
        # subtract the part before now.
        self.busy_s = -(self.busy * now - self._armed_sum)
        self.service_time_sum_s = 0.0
        self.requested_service_s = 0.0
        self.max_queue = len(self.queue)
        self.overshoot.clear()
        self.overshoot_sum_s = 0.0
        self.overshoot_n = 0

    # -- faults
    def set_fault(self, service_time_factor: float | None, error_probability: float | None) -> None:
        """Runtime fault values; None leaves a value as it is."""
        if service_time_factor is not None:
            self.fault_factor = service_time_factor
            self._factor = self.spec.service_time_factor * service_time_factor
        if error_probability is not None:
            self.error_probability = error_probability

    def clear_fault(self) -> None:
        self.fault_factor = 1.0
        self._factor = self.spec.service_time_factor
        self.error_probability = self.spec.error_probability

    def fault_state(self) -> dict:
        return {"service_time_factor": self.fault_factor, "error_probability": self.error_probability,
                "faulted": self.fault_factor != 1.0 or self.error_probability != self.spec.error_probability}

    # -- hot path
    def handle(self, req: Request) -> None:
        self.requests += 1
        gw = self.by_gateway
        gw[req.gateway] = gw.get(req.gateway, 0) + 1
        if req.path == HEALTH_PATH:
            self.health_checks += 1
        if self.busy < self.workers:
            self.busy += 1
            self._start(req)
        elif len(self.queue) < self.queue_limit:
            self.queue.append(req)
            if len(self.queue) > self.max_queue:
                self.max_queue = len(self.queue)
        else:
            self.rejected += 1
            self.responses[503] += 1
            req.conn.reply(req, self._answers[503][req.close])

    def _start(self, req: Request) -> None:
        s = self._draw() * self._factor
        req.service_s = s
        self.requested_service_s += s
        req.armed = armed = time.perf_counter()
        self._armed_sum += armed
        self._later(s, self._finish, req)

    def _finish(self, req: Request) -> None:
        now = time.perf_counter()
        elapsed = now - req.armed
        over = elapsed - req.service_s
        self.overshoot.append(over)
        self.overshoot_sum_s += over
        self.overshoot_n += 1
        self.busy_s += elapsed
        self.service_time_sum_s += elapsed
        self.served += 1
        p = self.error_probability
        status = 500 if p and self._coin() < p else 200
        self.responses[status] += 1
        conn = req.conn
        if conn.closed:
            self.wasted += 1
        else:
            conn.reply(req, self._answers[status][req.close])
        queue = self.queue
        while queue:
            nxt = queue.popleft()
            if nxt.conn.closed:
                self.abandoned += 1
                continue
            self._armed_sum -= req.armed
            self._start(nxt)
            return
        self.busy -= 1
        # Exactly zero when idle, so rounding never accumulates in the sum.
        self._armed_sum = self._armed_sum - req.armed if self.busy else 0.0

    # -- results
    def stats(self) -> dict:
        """The counters and gauges as plain data.

        Keys: ``port``, ``workers``, ``queue_limit`` (configuration);
        ``requests``, ``responses`` (``{"200", "500", "503"}`` -> count),
        ``served``, ``rejected``, ``abandoned``, ``wasted``, ``health_checks``,
        ``by_gateway`` (header value -> count), ``busy_s``,
        ``service_time_sum_s``, ``requested_service_s``, ``overshoot_mean_s``
        (None before the first service), ``overshoot_n``, ``max_queue``
        (counters); ``in_service``, ``queued``, ``connections`` (gauges);
        ``service_time_factor`` (configured), ``fault_service_time_factor``,
        ``error_probability`` (in force), ``faulted`` (fault state).
        """
        now = time.perf_counter()
        n = self.overshoot_n
        return {
            "port": self.port,
            "workers": self.workers,
            "queue_limit": self.queue_limit,
            "requests": self.requests,
            "responses": {str(k): v for k, v in self.responses.items()},
            "served": self.served,
            "rejected": self.rejected,
            "abandoned": self.abandoned,
            "wasted": self.wasted,
            "health_checks": self.health_checks,
            "by_gateway": {k.decode("latin-1"): v for k, v in self.by_gateway.items()},
            "busy_s": self.busy_s + (self.busy * now - self._armed_sum),
            "service_time_sum_s": self.service_time_sum_s,
            "requested_service_s": self.requested_service_s,
            "overshoot_mean_s": self.overshoot_sum_s / n if n else None,
            "overshoot_n": n,
            "max_queue": self.max_queue,
            "in_service": self.busy,
            "queued": len(self.queue),
            "connections": len(self.conns),
            "service_time_factor": self.spec.service_time_factor,
            "fault_service_time_factor": self.fault_factor,
            "error_probability": self.error_probability,
            "faulted": self.fault_state()["faulted"],
        }


# --------------------------------------------------------------------------- admin


class FaultRequest(_Spec):
    """The body of ``POST /fault``."""

    instances: list[str] | None = None
    service_time_factor: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    error_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    clear: bool = False


class Admin(Endpoint):
    """The admin port: ready, stats, overshoot, reset, fault (see the module docstring)."""

    keep_body = True

    def __init__(self, instances: Sequence[Instance], loop: asyncio.AbstractEventLoop):
        super().__init__()
        self.instances = {inst.name: inst for inst in instances}
        self.loop = loop
        self._window_start = loop.time()

    def handle(self, req: Request) -> None:
        try:
            status, body = self._route(req.method, req.path, req.body)
        except ValueError as exc:
            status, body = 400, {"error": str(exc)}
        if isinstance(body, str):
            data = build_response(status, body.encode(), close=req.close, content_type="text/plain")
        else:
            data = build_response(status, json.dumps(body).encode(), close=req.close,
                                  content_type="application/json")
        req.conn.reply(req, data)

    def _route(self, method: bytes, path: bytes, body: bytes) -> tuple[int, Any]:
        routes = {b"/ready": b"GET", b"/stats": b"GET", b"/overshoot": b"GET",
                  b"/reset": b"POST", b"/fault": b"POST"}
        if path not in routes:
            return 404, {"error": f"no such path {path.decode('latin-1')!r}"}
        if method != routes[path]:
            return 405, {"error": f"{path.decode()} takes {routes[path].decode()}"}
        if path == b"/ready":
            return 200, "ok"
        if path == b"/stats":
            now = self.loop.time()
            return 200, {"instances": {n: i.stats() for n, i in self.instances.items()},
                         "t": now, "window_s": now - self._window_start}
        if path == b"/overshoot":
            return 200, {n: list(i.overshoot) for n, i in self.instances.items()}
        if path == b"/reset":
            for inst in self.instances.values():
                inst.reset()
            self._window_start = self.loop.time()
            return 200, {"reset": list(self.instances)}
        return 200, self._fault(body)

    def _fault(self, body: bytes) -> dict:
        try:
            obj = json.loads(body or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"fault body is not JSON: {exc}") from None
        try:
            fault = FaultRequest.model_validate(obj)
        except ValidationError as exc:
            raise ValueError(describe_error(exc)) from None
        names = list(self.instances) if fault.instances is None else fault.instances
        unknown = [n for n in names if n not in self.instances]
        if unknown:
            raise ValueError(f"instances: unknown instance(s) {', '.join(unknown)} "
                             f"(known: {', '.join(self.instances)})")
        for name in names:
            inst = self.instances[name]
            if fault.clear:
                inst.clear_fault()
            inst.set_fault(fault.service_time_factor, fault.error_probability)
        return {"instances": {n: i.fault_state() for n, i in self.instances.items()}}


# --------------------------------------------------------------------------- process


class BindError(Exception):
    """A port could not be bound (the message names the instance and the port)."""


async def serve(spec: BackendSpec, stop: asyncio.Event | None = None) -> None:
    """Listen on every port, print ``READY <admin_port>``, serve until ``stop`` (or SIGTERM/SIGINT).

    Raises:
        BindError: a port could not be bound; nothing is left listening.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    instances = [Instance(s, i, spec.seed) for i, s in enumerate(spec.instances)]
    admin = Admin(instances, loop)
    endpoints: list[tuple[str, int, Endpoint]] = [(f"instance {i.name}", i.port, i) for i in instances]
    endpoints.append(("admin", spec.admin_port, admin))
    servers: list[asyncio.AbstractServer] = []
    try:
        for label, port, endpoint in endpoints:
            if isinstance(endpoint, Instance):
                endpoint.bind(loop)
            try:
                servers.append(await loop.create_server(
                    lambda e=endpoint: HttpConnection(e), LOCALHOST, port, backlog=1024))
            except OSError as exc:
                raise BindError(f"{label}: cannot listen on {LOCALHOST}:{port}: "
                                f"{exc.strerror or exc}") from None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {spec.admin_port}", flush=True)
        await stop.wait()
    finally:
        for srv in servers:
            srv.close()
        for _, _, endpoint in endpoints:
            for conn in list(endpoint.conns):
                conn.transport.abort()
        for srv in servers:
            await srv.wait_closed()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (the reference fleet's), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dev dependency
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reference_gateway.backend --spec SPEC.json``; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reference_gateway.backend",
                                     description="Backend instances of the reference fleet.")
    parser.add_argument("--spec", required=True, help="JSON spec: admin_port, seed, instances")
    args = parser.parse_args(argv)
    try:
        spec = parse_spec(load_spec(args.spec))
    except ValueError as exc:
        print(f"backend: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve(spec))
    except BindError as exc:
        print(f"backend: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
