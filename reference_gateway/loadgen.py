"""An open-loop load generator for the reference fleet: the simulator's workload over real HTTP/1.1.

::

    python -m reference_gateway.loadgen --spec SPEC.json --out OUT.npz

SPEC.json (see :class:`LoadSpec`)::

    {"target": "127.0.0.1:40100", "path": "/api/x", "seed": 3,
     "rate_schedule": [{"at_s": 0, "rate_per_s": 500}, {"at_s": 10, "rate_per_s": 900}],
     "arrivals": "poisson", "duration_s": 20, "max_requests": 100000, "timeout_s": 2.0,
     "max_connections": 512, "start_at": 1764200000.25, "processes": 1, "headers": {}}

Arrivals
    Exactly those of the simulator's client population
    (:class:`sim.components.workload.ClientPopulation`): ``rate_schedule`` has
    the meaning of ``workload.rate_schedule`` (steps, and linear ramps over
    ``ramp_s`` from the previous rate; the same checks), and the arrival
    times are drawn up front by inverting the cumulative rate
    (:class:`~sim.components.workload.RateFunction`) at sums of Exp(1) gaps
    (``poisson``) or of unit gaps (``deterministic``: evenly spaced in the
    cumulative rate). Arrivals stop at ``duration_s`` or after
    ``max_requests``, whichever comes first.

Open loop, no coordinated omission
    t=0 is the wall-clock time ``start_at`` (``time.time()``; default: 0.2 s
    after the workers are ready). At each scheduled time the request goes out
    on an idle keep-alive connection, or on a new one while fewer than
    ``max_connections`` are open; at the cap it waits for the next connection
    to come free. Its latency counts from its *scheduled* time whatever held
    it up, and so does its deadline: a request not answered by ``t_sched +
    timeout_s`` fails with status 0 (the connection it was on is closed), as
    does one whose connection fails. After the last arrival the generator
    waits for the outstanding answers (their deadlines bound the wait); it
    stops for good at ``duration_s + timeout_s + 5`` s, recording what is
    still unanswered as status 0.

    The generator sleeps until the next arrival (uvloop timers have 1 ms
    granularity), so a request leaves up to about a millisecond after its
    time; ``t_sent - t_sched`` (the lateness, in ``meta``) measures how far
    it fell behind its own schedule.

Output (:func:`load_result` reads it back)
    ``OUT.npz`` holds, one entry per issued request in order of ``t_sched``:
    ``t_sched`` (scheduled send time, s since t=0), ``t_sent`` (actual send
    time; NaN if never sent), ``latency`` (answer complete, or failure,
    minus ``t_sched``, s) and ``status`` (int16 HTTP status; 0 = timeout or
    connection error); and ``meta``, a JSON string (see :func:`run_load`).
    The file is written to a temporary name in the same directory and
    renamed, so a reader never sees half a file.

Several processes
    With ``processes`` K > 1, K spawned workers each generate the schedule
    scaled by 1/K from their own seed stream (worker k:
    ``SeedSequence(seed, spawn_key=(k,))``; one process is worker 0) and
    ``max_requests`` split evenly; the parent waits until all are ready,
    fixes ``start_at``, and merges their parts by ``t_sched``.

HTTP
    A minimal HTTP/1.1 client on ``asyncio.Protocol`` (uvloop when
    installed), with the wire format of :mod:`.http1`: one request at a time
    per keep-alive connection, responses framed by ``Content-Length``,
    chunked encoding or connection close; ``Connection: close`` and HTTP/1.0
    answers retire the connection, and so does an answer it cannot parse.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import multiprocessing as mp
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sim.components.workload import RateFunction
from sim.config.distributions import Constant, Exponential
from sim.config.models import RateStep
from sim.engine.sampling import Sampler
from sim.files import atomic_write_bytes

from .backend import describe_error, loop_factory
from .http1 import HttpError, ResponseParser, build_request
from .specs import load_json_spec

#: Extra time after ``duration_s + timeout_s`` before the generator stops for good (s).
HARD_STOP_GRACE_S = 5.0
#: Delay from "every worker ready" to t=0 when the spec gives no ``start_at`` (s).
START_DELAY_S = 0.2
#: How long spawned workers may take to become ready (s).
WORKER_READY_TIMEOUT_S = 120.0
UNSENT = -1

ARRAYS = ("t_sched", "t_sent", "latency", "status")


# --------------------------------------------------------------------------- spec


class LoadSpec(BaseModel):
    """What to send, where, and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(description="host:port of the gateway (or backend).")
    path: str = "/"
    seed: int = Field(default=0, ge=0)
    rate_schedule: list[RateStep] = Field(min_length=1)
    arrivals: Literal["poisson", "deterministic"] = "poisson"
    duration_s: float = Field(gt=0, allow_inf_nan=False)
    max_requests: int = Field(default=1_000_000, ge=1)
    timeout_s: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    max_connections: int = Field(default=512, ge=1)
    start_at: float | None = Field(default=None, allow_inf_nan=False)
    processes: int = Field(default=1, ge=1, le=64)
    headers: dict[str, str] = {}

    @field_validator("target")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"expected host:port with a port in 1..65535, got {value!r}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in " \r\n"):
            raise ValueError(f"expected an absolute path without spaces, got {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or any(c in name for c in " :\r\n\t") or any(c in text for c in "\r\n"):
                raise ValueError(f"bad header {name!r}: {text!r}")
        return value

    @model_validator(mode="after")
    def _schedule(self) -> LoadSpec:
        # The checks of sim.config.checks on workload.rate_schedule.
        steps = self.rate_schedule
        if steps[0].at_s != 0:
            raise ValueError(f"rate_schedule.0.at_s: the first step must start at 0, not {steps[0].at_s:g}")
        if steps[0].ramp_s > 0:
            raise ValueError("rate_schedule.0.ramp_s: the first step cannot ramp (there is no rate before it)")
        for i in range(1, len(steps)):
            prev, cur = steps[i - 1], steps[i]
            if cur.at_s < prev.at_s + prev.ramp_s or cur.at_s == prev.at_s:
                raise ValueError(f"rate_schedule.{i}.at_s: step at {cur.at_s:g} s must come after the "
                                 f"previous step and its ramp end ({prev.at_s + prev.ramp_s:g} s)")
        return self

    @property
    def host(self) -> str:
        return self.target.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.target.rpartition(":")[2])


def parse_spec(obj: Any) -> LoadSpec:
    """Validate a spec given as plain data; ValueError naming the field on bad input."""
    if isinstance(obj, LoadSpec):
        return obj
    try:
        return LoadSpec.model_validate(obj)
    except ValidationError as exc:
        raise ValueError(describe_error(exc)) from None


def load_spec(path: str | Path) -> LoadSpec:
    """Read and validate SPEC.json; ValueError naming the file and the field."""
    return load_json_spec(path, parse_spec)


class LoadError(Exception):
    """The run could not be made (unresolvable target, a worker that failed)."""


# --------------------------------------------------------------------------- arrivals


def arrival_times(spec: LoadSpec, worker: int = 0, workers: int = 1) -> list[float]:
    """Worker ``worker``'s scheduled send times (s since t=0), in order.

    Each of the ``workers`` follows the schedule scaled by 1/workers. Poisson
    streams split that way add up to the whole Poisson process. Deterministic
    ones are put out of phase: worker k takes arrivals k+1, k+1+K, ... of the
    single evenly spaced stream (its first gap is (k+1)/K in its own scaled
    cumulative rate), so together they are that stream, not K in lockstep.
    Likewise worker k gets the share of ``max_requests`` it would have had.
    """
    rate = RateFunction(list(spec.rate_schedule), 1.0 / workers)
    unit = Exponential(mean=1.0) if spec.arrivals == "poisson" else Constant(value=1.0)
    gap = Sampler(unit, np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(worker,)))).draw
    limit = spec.max_requests // workers + (worker < spec.max_requests % workers)
    stop = spec.duration_s
    out: list[float] = []
    advance = rate.advance
    first = gap() if spec.arrivals == "poisson" else (worker + 1) / workers
    t = advance(0.0, first)
    while t < stop and len(out) < limit:
        out.append(t)
        t = advance(t, gap())
    return out


def expected_requests(spec: LoadSpec) -> float:
    """The mean number of arrivals in [0, duration_s] (before the ``max_requests`` cap)."""
    return RateFunction(list(spec.rate_schedule)).integral(0.0, spec.duration_s)


# --------------------------------------------------------------------------- HTTP client


class ClientConnection(asyncio.Protocol):
    """One keep-alive connection of the pool, carrying one request at a time.

    ``current`` is the index of the request it carries (-1 when idle).
    """

    __slots__ = ("run", "transport", "current", "parser", "dead")

    def __init__(self, run: Run):
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.current = -1
        self.parser = ResponseParser()
        self.dead = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, i: int) -> None:
        self.current = i
        run = self.run
        run.holder[i] = self
        run.t_sent[i] = time.perf_counter() - run.base
        self.transport.write(run.request_bytes)

    def data_received(self, data: bytes) -> None:
        """Record the answer once it is all in; drop the connection if the bytes are not one.

        Args:
            data: The bytes just read, split anywhere.
        """
        if self.current < 0:
            self.transport.abort()  # an answer nobody asked for: the stream is out of step
            return
        try:
            done = self.parser.feed(data)
        except HttpError:
            self.transport.abort()
            return
        if done:
            self._complete()

    def _complete(self) -> None:
        i = self.current
        self.current = -1
        run = self.run
        parser = self.parser
        run.answered(i, parser.status)
        if parser.keep:
            run.release(self)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current >= 0 and self.parser.feed_eof():
            self._complete()  # the body ran to the close
        self.dead = True
        self.run.lost(self)


# --------------------------------------------------------------------------- one worker


class Run:
    """One worker's run: its schedule, its connection pool, its records.

    Records are Python lists indexed by request (cheaper to write one item
    than numpy arrays); :meth:`result` turns them into arrays.
    """

    def __init__(self, spec: LoadSpec, t_sched: list[float], base: float):
        self.spec = spec
        self.t_sched = t_sched
        n = len(t_sched)
        self.base = base  # perf_counter() at t=0
        nan = math.nan
        self.t_sent = [nan] * n
        self.t_done = [nan] * n
        self.t_dispatch = [nan] * n
        self.status = [UNSENT] * n
        self.holder: list[ClientConnection | None] = [None] * n
        self.request_bytes = build_request("GET", spec.path, spec.headers, host=spec.target)
        self.loop = asyncio.get_running_loop()
        self.idle: list[ClientConnection] = []
        self.conns: set[ClientConnection] = set()
        self.connecting: set[asyncio.Task] = set()
        self.waiting: deque[int] = deque()
        self.n_conns = 0  # open or opening
        self.max_conns_open = 0
        self.connects = 0
        self.connect_failures = 0
        self.lost_in_flight = 0
        self.timeouts = 0
        self.dispatched = 0
        self.resolved = 0
        self.issuing = True
        self.oldest = 0  # no request before it is unresolved
        self.done = asyncio.Event()
        self.warned = False
        self.hard_stopped = False
        self.stopped = False

    def now(self) -> float:
        return time.perf_counter() - self.base

    # -- issuing
    async def issue(self) -> None:
        """Dispatch each request at its scheduled time."""
        t = self.t_sched
        n = len(t)
        clock = time.perf_counter
        base = self.base
        dispatch = self._dispatch
        t_dispatch = self.t_dispatch
        i = 0
        while i < n:
            now = clock() - base
            while i < n and t[i] <= now:
                t_dispatch[i] = now
                self.dispatched = i + 1
                dispatch(i)
                i += 1
            if i < n:
                await asyncio.sleep(t[i] - now)
        self.issuing = False
        self._check_done()

    def _dispatch(self, i: int) -> None:
        if self.idle:
            self.idle.pop().send(i)
        elif self.n_conns < self.spec.max_connections:
            self._open(i)
        else:
            self.waiting.append(i)

    def _open(self, i: int) -> None:
        if self.stopped:
            self.fail(i)
            return
        self.n_conns += 1
        self.connects += 1
        if self.n_conns > self.max_conns_open:
            self.max_conns_open = self.n_conns
        spec = self.spec
        coro = asyncio.wait_for(
            self.loop.create_connection(lambda: ClientConnection(self), spec.host, spec.port),
            spec.timeout_s)
        task = self.loop.create_task(coro)
        self.connecting.add(task)
        task.add_done_callback(lambda task: self._connected(i, task))

    def _connected(self, i: int, task: asyncio.Task) -> None:
        self.connecting.discard(task)
        if task.cancelled():
            self.n_conns -= 1
            return
        exc = task.exception()
        if exc is not None:
            self.n_conns -= 1
            self.connect_failures += 1
            if not self.warned:
                self.warned = True
                reason = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or exc)
                print(f"loadgen: warning: cannot connect to {self.spec.target} ({reason}); "
                      "such requests are recorded with status 0", file=sys.stderr, flush=True)
            self.fail(i)
            self._refill()
            return
        _, conn = task.result()
        if conn.dead:  # closed by the peer before we could use it (lost() counted it)
            self.fail(i)
            return
        self.conns.add(conn)
        if self._unresolved(i):
            conn.send(i)
        else:
            self.release(conn)  # its request timed out while it connected

    # -- outcomes
    def answered(self, i: int, code: int) -> None:
        if not math.isnan(self.t_done[i]):
            return
        self.status[i] = code
        self.t_done[i] = self.now()
        self.resolved += 1
        self._check_done()

    def fail(self, i: int) -> None:
        """Request ``i`` failed now (status 0), unless it was already answered."""
        if not math.isnan(self.t_done[i]):
            return
        self.status[i] = 0
        self.t_done[i] = self.now()
        self.resolved += 1
        self._check_done()

    def _unresolved(self, i: int) -> bool:
        return math.isnan(self.t_done[i])

    def release(self, conn: ClientConnection) -> None:
        """``conn`` is free: give it to the oldest waiting request, or make it idle."""
        waiting = self.waiting
        while waiting:
            i = waiting.popleft()
            if self._unresolved(i):
                conn.send(i)
                return
        self.idle.append(conn)

    def lost(self, conn: ClientConnection) -> None:
        """A connection closed (by either end)."""
        self.n_conns -= 1
        self.conns.discard(conn)
        if conn.current >= 0:
            self.lost_in_flight += 1
            self.fail(conn.current)
            conn.current = -1
        else:
            try:
                self.idle.remove(conn)
            except ValueError:
                pass
        self._refill()

    def _refill(self) -> None:
        """Open a connection for the oldest waiting request, if one waits and the cap allows."""
        waiting = self.waiting
        while waiting and self.n_conns < self.spec.max_connections:
            i = waiting.popleft()
            if self._unresolved(i):
                self._open(i)
                return

    def sweep(self) -> None:
        """Fail every request past its deadline (``t_sched + timeout_s``); reschedules itself.

        Requests are dispatched in ``t_sched`` order, so their deadlines are in
        index order and the scan starts at the oldest unresolved one.
        """
        now = self.now()
        cutoff = now - self.spec.timeout_s
        t = self.t_sched
        i = self.oldest
        while i < self.dispatched:
            if self._unresolved(i):
                if t[i] > cutoff:
                    break
                self.timeouts += 1
                conn = self.holder[i]
                self.fail(i)
                if conn is not None and conn.current == i:
                    conn.current = -1
                    conn.transport.abort()
            i += 1
        self.oldest = i
        if not self.done.is_set():
            self.loop.call_later(min(0.01, self.spec.timeout_s / 10), self.sweep)

    def _check_done(self) -> None:
        if not self.issuing and self.resolved == self.dispatched:
            self.done.set()

    def shutdown(self) -> None:
        """Hard stop: what is unanswered fails now; close every connection."""
        self.stopped = True
        for task in list(self.connecting):
            task.cancel()
        for i in range(self.dispatched):
            if self._unresolved(i):
                self.fail(i)
        for conn in list(self.conns):
            conn.current = -1
            conn.transport.abort()

    # -- result
    def result(self) -> dict[str, np.ndarray]:
        n = self.dispatched
        t_sched = np.array(self.t_sched[:n], dtype=np.float64)
        return {
            "t_sched": t_sched,
            "t_sent": np.array(self.t_sent[:n], dtype=np.float64),
            "latency": np.array(self.t_done[:n], dtype=np.float64) - t_sched,
            "status": np.array(self.status[:n], dtype=np.int16),
            "t_dispatch": np.array(self.t_dispatch[:n], dtype=np.float64),
        }


async def _run_async(spec: LoadSpec, t_sched: list[float], start_at: float) -> tuple[dict, dict]:
    base = time.perf_counter() + (start_at - time.time())
    run = Run(spec, t_sched, base)
    hard_stop = spec.duration_s + spec.timeout_s + HARD_STOP_GRACE_S
    wait = base - time.perf_counter()
    if wait > 0:
        await asyncio.sleep(wait)
    run.sweep()
    issuer = asyncio.ensure_future(run.issue())
    try:
        await asyncio.wait_for(run.done.wait(), timeout=max(0.0, hard_stop - run.now()))
    except TimeoutError:
        run.hard_stopped = True
    issuer.cancel()
    run.done.set()  # stops the sweeper
    run.shutdown()
    for _ in range(3):
        await asyncio.sleep(0)  # let the aborted transports report before the loop closes
    counts = {
        "connections_opened": run.connects - run.connect_failures,
        "connect_attempts": run.connects,
        "connect_failures": run.connect_failures,
        "max_connections_open": run.max_conns_open,
        "timeouts": run.timeouts,
        "lost_in_flight": run.lost_in_flight,
        "hard_stopped": run.hard_stopped,
    }
    return run.result(), counts


def _run_worker(spec: LoadSpec, worker: int, workers: int, start_at: float) -> tuple[dict, dict]:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_run_async(spec, arrival_times(spec, worker, workers), start_at))


def _spawned(spec_obj: dict, worker: int, workers: int, pipe) -> None:
    """A spawned worker: build the schedule, report ready, wait for start_at, run, send the part."""
    try:
        spec = parse_spec(spec_obj)
        t_sched = arrival_times(spec, worker, workers)
        pipe.send(("ready", len(t_sched)))
        start_at = pipe.recv()
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            part = runner.run(_run_async(spec, t_sched, start_at))
        pipe.send(("done", part))
    except Exception as exc:  # the parent reports it; a worker has no terminal of its own
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        pipe.close()


# --------------------------------------------------------------------------- parts, meta, files


def _quantiles(prefix: str, x: np.ndarray) -> dict[str, float | None]:
    """``{prefix}_p50_s``, ``_p99_s``, ``_max_s`` of the finite values of ``x`` (None if none)."""
    x = x[np.isfinite(x)]
    keys = [f"{prefix}_{q}_s" for q in ("p50", "p99", "max")]
    if not len(x):
        return dict.fromkeys(keys)
    p50, p99 = np.percentile(x, [50, 99])
    return dict(zip(keys, (float(p50), float(p99), float(x.max())), strict=True))


def _merge(parts: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    arrays = {k: np.concatenate([p[k] for p, _ in parts]) for k in parts[0][0]}
    order = np.argsort(arrays["t_sched"], kind="stable")
    arrays = {k: v[order] for k, v in arrays.items()}
    counts: dict[str, Any] = {}
    for _, c in parts:
        for k, v in c.items():
            counts[k] = (counts.get(k, False) or v) if isinstance(v, bool) else counts.get(k, 0) + v
    return arrays, counts


def _meta(spec: LoadSpec, arrays: dict, counts: dict, start_at: float, wall_s: float) -> dict:
    status = arrays["status"]
    n = len(status)
    sent = np.isfinite(arrays["t_sent"])
    capped = n >= spec.max_requests
    span = float(arrays["t_sched"][-1]) if capped and n else spec.duration_s
    if sent.any():
        span = max(span, float(np.nanmax(arrays["t_sent"])))
    codes, freq = np.unique(status, return_counts=True)
    return {
        "spec": spec.model_dump(mode="json", by_alias=True),
        "requests": n,
        "completed": int((status > 0).sum()),
        "failed": int((status == 0).sum()),
        "sent": int(sent.sum()),
        "status_counts": {str(int(c)): int(k) for c, k in zip(codes, freq, strict=True)},
        "expected_requests": expected_requests(spec),
        "achieved_rate_per_s": float(sent.sum()) / span if span > 0 else 0.0,
        **_quantiles("lateness", arrays["t_sent"] - arrays["t_sched"]),
        **_quantiles("dispatch_lateness", arrays["t_dispatch"] - arrays["t_sched"]),
        **counts,
        "start_at": start_at,
        "wall_s": wall_s,
        "processes": spec.processes,
    }


def save_result(out: str | Path, arrays: dict, meta: dict) -> None:
    """Write OUT.npz atomically (:func:`sim.files.atomic_write_bytes`).

    Args:
        out: The destination; missing folders are created.
        arrays: At least the :data:`ARRAYS` entries, one value per request.
        meta: Plain data, stored as a JSON string.

    Raises:
        OSError: ``out`` cannot be written; it is then untouched.
    """
    buf = io.BytesIO()
    np.savez(buf, **{k: arrays[k] for k in ARRAYS}, meta=np.array(json.dumps(meta)))
    atomic_write_bytes(out, buf.getbuffer())


def load_result(path: str | Path) -> dict:
    """OUT.npz as ``{"t_sched", "t_sent", "latency", "status": arrays, "meta": dict}``."""
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in ARRAYS}
        out["meta"] = json.loads(str(z["meta"]))
    return out


# --------------------------------------------------------------------------- entry points


def _check_target(spec: LoadSpec) -> None:
    try:
        socket.getaddrinfo(spec.host, spec.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise LoadError(f"target {spec.target}: cannot resolve {spec.host!r}: {exc.strerror}") from None


def _run_spawned(spec: LoadSpec) -> tuple[list[tuple[dict, dict]], float]:
    ctx = mp.get_context("spawn")
    k = spec.processes
    pipes, procs = [], []
    try:
        for w in range(k):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_spawned, args=(spec.model_dump(mode="json", by_alias=True), w, k, child),
                               name=f"loadgen-{w}", daemon=True)
            proc.start()
            child.close()
            pipes.append(parent)
            procs.append(proc)
        for w, pipe in enumerate(pipes):
            _expect(pipe, "ready", w, WORKER_READY_TIMEOUT_S)
        start_at = spec.start_at if spec.start_at is not None else time.time() + START_DELAY_S
        for pipe in pipes:
            pipe.send(start_at)
        bound = start_at - time.time() + spec.duration_s + spec.timeout_s + HARD_STOP_GRACE_S + 30
        parts = [_expect(pipe, "done", w, max(bound, 1.0)) for w, pipe in enumerate(pipes)]
        for proc in procs:
            proc.join(10)
        return parts, start_at
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()


def _expect(pipe, what: str, worker: int, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise LoadError(f"worker {worker}: no '{what}' within {timeout:.0f} s")
    try:
        kind, value = pipe.recv()
    except EOFError:
        raise LoadError(f"worker {worker}: exited before '{what}'") from None
    if kind == "error":
        raise LoadError(f"worker {worker}: {value}")
    if kind != what:
        raise LoadError(f"worker {worker}: sent {kind!r}, expected {what!r}")
    return value


def run_load(spec: dict | LoadSpec, out: str | Path) -> dict:
    """Run the load of ``spec``, write ``out`` (npz) and return its ``meta``.

    ``meta`` keys: ``spec`` (normalised), ``requests`` (issued), ``completed``
    (answered with an HTTP status), ``failed`` (status 0), ``sent``,
    ``status_counts`` (status -> count, as strings), ``expected_requests``
    (integral of the rate over [0, duration_s]), ``achieved_rate_per_s``
    (requests sent / max(scheduled span, last send time)),
    ``lateness_p50_s``, ``lateness_p99_s``, ``lateness_max_s`` (of t_sent -
    t_sched: how far the generator fell behind its schedule, connection waits
    and connects included), ``dispatch_lateness_p50_s`` / ``_p99_s`` /
    ``_max_s`` (of the time the generator took each request up minus t_sched:
    its own lag alone; None when nothing was sent),
    ``connections_opened``, ``connect_attempts``, ``connect_failures``,
    ``max_connections_open`` (summed over processes), ``timeouts``,
    ``lost_in_flight``, ``hard_stopped``, ``start_at``, ``wall_s``,
    ``processes``.

    Raises:
        ValueError: a bad spec (naming the field).
        LoadError: the target cannot be resolved, a worker failed, or ``out``
            cannot be written.
    """
    t0 = time.perf_counter()
    spec = parse_spec(spec)
    _check_target(spec)
    if spec.processes == 1:
        start_at = spec.start_at if spec.start_at is not None else time.time() + START_DELAY_S
        parts = [_run_worker(spec, 0, 1, start_at)]
    else:
        parts, start_at = _run_spawned(spec)
    arrays, counts = _merge(parts)
    meta = _meta(spec, arrays, counts, start_at, time.perf_counter() - t0)
    try:
        save_result(out, arrays, meta)
    except OSError as exc:
        raise LoadError(f"{out}: cannot write the result: {exc.strerror or exc}") from None
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reference_gateway.loadgen --spec SPEC.json --out OUT.npz``; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reference_gateway.loadgen",
                                     description="Open-loop HTTP load for the reference fleet.")
    parser.add_argument("--spec", required=True, help="JSON spec (target, rate_schedule, duration_s, ...)")
    parser.add_argument("--out", required=True, help="where to write the npz result")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    try:
        meta = run_load(spec, args.out)
    except LoadError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    print(f"DONE {meta['requests']} {meta['completed']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
