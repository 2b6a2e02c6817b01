"""What the reference real fleet tells us: Envoy admin, HAProxy and Redis stats, CPU from /proc.

Everything here reads; nothing starts or stops a process (that is
:mod:`reference_gateway.harness`). Every address is ``127.0.0.1``.

Envoy (admin interface, verified against Envoy 1.40)
    :func:`envoy_stats` flattens ``GET /stats?format=json`` to ``{name: value}``
    for counters and gauges (histograms and text readouts are dropped). The
    JSON is ``{"stats": [{"name": ..., "value": int}, ..., {"histograms":
    {...}}]}``. Names worth knowing, for a cluster ``<c>`` (one per service in
    :mod:`reference_gateway.envoy_config`) and the listener's
    ``stat_prefix`` ``ingress_http``:

    - ``cluster.<c>.upstream_rq_total``: tries sent upstream, retries
      included. ``upstream_rq_completed``, ``upstream_rq_2xx``/``_5xx``/
      ``_503``... count only the try whose answer went back downstream
      (observed: 2 requests, 3 tries each, all 503: ``upstream_rq_total``
      6, ``upstream_rq_retry`` 4, ``upstream_rq_retry_limit_exceeded`` 2,
      ``upstream_rq_503`` 2; the host's ``rq_total`` and ``rq_error`` in
      ``/clusters`` 6); ``cluster.<c>.external.upstream_rq_*`` by origin;
    - ``cluster.<c>.upstream_rq_retry``, ``upstream_rq_retry_success``,
      ``upstream_rq_retry_overflow`` (circuit breaker or budget said no),
      ``upstream_rq_retry_limit_exceeded``, ``upstream_rq_retry_backoff_exponential``;
    - ``cluster.<c>.upstream_rq_pending_overflow`` (``max_pending_requests``
      or ``max_requests`` reached), ``upstream_cx_overflow``
      (``max_connections``), ``upstream_rq_pending_failure_eject``,
      ``upstream_cx_connect_fail``;
    - ``cluster.<c>.upstream_rq_per_try_timeout``, ``upstream_rq_timeout``
      (route timeout, 504);
    - ``cluster.<c>.outlier_detection.ejections_enforced_total``,
      ``ejections_active`` (gauge), ``ejections_enforced_consecutive_5xx``,
      ``ejections_detected_*``, ``ejections_overflow``;
    - ``cluster.<c>.health_check.attempt``/``success``/``failure``/
      ``network_failure``/``healthy`` (gauge). This family and the one
      above exist only when the cluster configures health checks or
      outlier detection: read them with ``.get(name, 0)``;
    - ``cluster.<c>.membership_healthy``/``membership_total`` (gauges),
      ``lb_healthy_panic``;
    - ``cluster.<c>.circuit_breakers.default.rq_open`` (gauge, 0/1) and
      ``cx_open``, ``rq_pending_open``, ``rq_retry_open``;
    - ``http.ingress_http.downstream_rq_2xx``/``_5xx``/``_total``,
      ``downstream_cx_total``, ``downstream_cx_ssl_total``;
      ``listener.127.0.0.1_<port>.downstream_cx_total`` and, with TLS (from
      Envoy's documentation; the bootstrap has no TLS yet),
      ``listener.127.0.0.1_<port>.ssl.handshake``, ``ssl.connection_error``,
      ``ssl.session_reused``...

    :func:`envoy_cluster_hosts` reads ``GET /clusters?format=json``:
    ``{"cluster_statuses": [{"name": c, "host_statuses": [{"address":
    {"socket_address": {"address", "port_value"}}, "stats": [{"name":
    "rq_total", "value": "12"}, {"name": "cx_active", "type": "GAUGE"}, ...],
    "health_status": {"failed_outlier_check": true, "eds_health_status":
    "HEALTHY"}, "weight": 1, "locality": {"zone": "a"}}, ...]}]}``. Protobuf
    JSON omits zeros and false: a stat without ``value`` is 0, a missing flag
    is false; counter values are strings (uint64).

    ``POST /reset_counters`` zeroes the stats of ``/stats`` but *not* the
    per-host counters of ``/clusters`` (Envoy 1.40 keeps those; take
    differences).

HAProxy
    ``show stat`` on the admin socket: CSV whose header line starts ``# ``,
    one row per frontend, backend and server (``pxname``, ``svname``,
    ``scur`` current sessions, ``stot`` total, ``bin``/``bout`` bytes).

CPU
    ``/proc/<pid>/stat`` ``utime`` + ``stime`` (fields 14, 15; the process
    line already sums its threads) and the aggregate ``cpu`` line of
    ``/proc/stat``, both in clock ticks (``SC_CLK_TCK``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCALHOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# urllib honours http_proxy; a proxy must never see loopback admin traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- /proc


def proc_stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` split into fields, 1-based as in proc(5): index 0 is unused.

    ``comm`` (field 2) may hold spaces and parentheses, so the line is split
    at its last ``)``.

    Raises:
        ProcessLookupError: no such process.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcessLookupError(f"no process {pid}") from e
    head, _, tail = raw.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    return ["", pid_s, comm, *tail.split()]


def proc_start_ticks(pid: int) -> int:
    """The process's start time (field 22): clock ticks after boot. With the pid, it names a process uniquely."""
    return int(proc_stat_fields(pid)[22])


def proc_state(pid: int) -> str:
    """One letter (field 3): ``R``, ``S``, ``D``, ``Z`` (zombie), ``X``..."""
    return proc_stat_fields(pid)[3]


def proc_cpu_ticks(pid: int) -> int:
    """:func:`proc_cpu_seconds` in clock ticks."""
    f = proc_stat_fields(pid)
    return int(f[14]) + int(f[15])


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds the process has used, user + system, all its threads.

    Raises:
        ProcessLookupError: no such process.
    """
    return proc_cpu_ticks(pid) / CLK_TCK


def proc_cpu_ns(pid: int) -> int:
    """CPU nanoseconds the process's live threads have run (``/proc/<pid>/task/*/schedstat``).

    Finer than :func:`proc_cpu_seconds` (clock ticks of 10 ms): for short
    measurements of long-lived threads (an Envoy's workers). A thread that
    exits takes its time with it.

    Raises:
        ProcessLookupError: no such process.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    total = 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread exited meanwhile
    return total


def machine_cpu_ticks() -> tuple[int, int]:
    """:func:`machine_cpu` in clock ticks."""
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                break
        else:
            raise RuntimeError("/proc/stat has no aggregate cpu line")
    v += [0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def machine_cpu() -> tuple[float, float]:
    """``(busy_s, total_s)`` of every CPU since boot, from ``/proc/stat``'s ``cpu`` line.

    Busy: user + nice + system + irq + softirq + steal (guest time is already
    inside user). Idle: idle + iowait. Stolen time counts as busy: it is
    other tenants of the host, i.e. noise.
    """
    busy, total = machine_cpu_ticks()
    return busy / CLK_TCK, total / CLK_TCK


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


@dataclass(frozen=True)
class BusyReport:
    """CPU use over one window.

    ``ours_cpu_s``: CPU seconds of the watched processes; ``machine_busy_s``:
    of the whole machine; ``other_cpu_s``: the difference (never negative):
    everything else, the noise. ``other_cores = other_cpu_s / wall_s``; the
    window is ``trustworthy`` when it is at most the threshold, else
    ``reason`` says why. CPU a watched process used between the start and its
    death is lost and shows as "other" (the kernel forgets it).
    """

    wall_s: float
    ours_cpu_s: float
    machine_busy_s: float
    machine_total_s: float
    other_cpu_s: float
    other_cores: float
    threshold_cores: float
    trustworthy: bool
    reason: str
    died: tuple[int, ...]
    loadavg: tuple[float, float, float]


class Busyness:
    """Was the machine quiet enough while we measured?

    ``start(pids)`` snapshots the CPU of ``pids`` (the processes of the
    experiment: the fleet, the load generator and the harness's own
    ``os.getpid()``) and of the machine; ``stop()`` returns a
    :class:`BusyReport`. ``sample()`` in between refreshes the last known
    CPU of each pid, so a pid that dies later loses less.
    """

    def __init__(self, threshold_cores: float = 0.35):
        if threshold_cores < 0:
            raise ValueError(f"negative threshold_cores {threshold_cores}")
        self.threshold_cores = threshold_cores
        # Clock ticks, kept as integers so that differences are exact.
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._died: set[int] = set()
        self._t0: float | None = None
        self._machine0 = (0, 0)

    def start(self, pids: list[int] | set[int] | tuple[int, ...]) -> Busyness:
        self._first.clear()
        self._last.clear()
        self._died.clear()
        for pid in pids:
            try:
                self._first[pid] = self._last[pid] = proc_cpu_ticks(pid)
            except ProcessLookupError:
                self._died.add(pid)
        self._machine0 = machine_cpu_ticks()
        self._t0 = time.monotonic()
        return self

    def sample(self) -> None:
        for pid in self._first:
            if pid in self._died:
                continue
            try:
                self._last[pid] = proc_cpu_ticks(pid)
            except ProcessLookupError:
                self._died.add(pid)

    def stop(self) -> BusyReport:
        if self._t0 is None:
            raise RuntimeError("Busyness.stop() before start()")
        self.sample()
        busy1, total1 = machine_cpu_ticks()
        wall = time.monotonic() - self._t0
        busy = (busy1 - self._machine0[0]) / CLK_TCK
        total = (total1 - self._machine0[1]) / CLK_TCK
        ours = sum(self._last[p] - self._first[p] for p in self._first) / CLK_TCK
        other = max(0.0, busy - ours)
        cores = other / wall if wall > 0 else 0.0
        ok = cores <= self.threshold_cores
        reason = "" if ok else (f"other processes used {cores:.2f} cores over {wall:.2f} s "
                                f"(allowed {self.threshold_cores:g}); load average {loadavg()[0]:.2f}")
        self._t0 = None
        return BusyReport(wall_s=wall, ours_cpu_s=ours, machine_busy_s=busy, machine_total_s=total,
                          other_cpu_s=other, other_cores=cores, threshold_cores=self.threshold_cores,
                          trustworthy=ok, reason=reason, died=tuple(sorted(self._died)),
                          loadavg=loadavg())


# --------------------------------------------------------------------------- Envoy


def _admin(admin_port: int, path: str, *, method: str = "GET", timeout_s: float = 2.0) -> bytes:
    url = f"http://{LOCALHOST}:{admin_port}{path}"
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with _OPENER.open(req, timeout=timeout_s) as r:
        return r.read()


def envoy_stats(admin_port: int, *, filter: str | None = None,
                used_only: bool = False) -> dict[str, int | float]:
    """Counters and gauges of the Envoy whose admin listens on ``admin_port``, by full name.

    ``filter``: Envoy's regular expression on the name (``filter=`` of
    ``/stats``); ``used_only``: only stats that were ever written.
    """
    query = ["format=json"]
    if filter is not None:
        query.append("filter=" + urllib.request.quote(filter, safe=""))
    if used_only:
        query.append("usedonly")
    doc = json.loads(_admin(admin_port, "/stats?" + "&".join(query)))
    out: dict[str, int | float] = {}
    for entry in doc.get("stats", []):
        value = entry.get("value")
        if "name" in entry and isinstance(value, int | float) and not isinstance(value, bool):
            out[entry["name"]] = value
    return out


def _number(text: Any) -> int | float:
    if isinstance(text, int | float):
        return text
    try:
        return int(text)
    except ValueError:
        return float(text)


def envoy_cluster_hosts(admin_port: int) -> dict[str, dict[str, dict[str, Any]]]:
    """``{cluster: {"127.0.0.1:port": host}}`` from ``GET /clusters?format=json``.

    Each host: its stats by name (``rq_total``, ``rq_success``, ``rq_error``,
    ``rq_timeout``, ``cx_total``, ``cx_connect_fail``; gauges ``rq_active``,
    ``cx_active``, ``rq_pending_active``; absent ones are 0), plus
    ``health_flags`` (sorted names of the true flags of ``health_status``:
    ``failed_outlier_check`` = ejected by outlier detection,
    ``failed_active_health_check``, ...), ``ejected`` (bool),
    ``eds_health_status``, ``weight``, ``zone`` ("" without locality) and
    ``success_rate`` (percent, or None while outlier detection has not
    computed one).
    """
    doc = json.loads(_admin(admin_port, "/clusters?format=json"))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cl in doc.get("cluster_statuses", []):
        hosts: dict[str, dict[str, Any]] = {}
        for h in cl.get("host_statuses", []):
            sa = h.get("address", {}).get("socket_address", {})
            key = f"{sa.get('address', '')}:{sa.get('port_value', 0)}"
            host: dict[str, Any] = {s["name"]: _number(s.get("value", 0)) for s in h.get("stats", [])}
            status = h.get("health_status", {})
            flags = sorted(k for k, v in status.items() if v is True)
            host["health_flags"] = flags
            host["ejected"] = "failed_outlier_check" in flags
            host["eds_health_status"] = status.get("eds_health_status", "UNKNOWN")
            host["weight"] = h.get("weight", 1)
            host["zone"] = h.get("locality", {}).get("zone", "")
            rate = h.get("success_rate", {}).get("value")
            host["success_rate"] = None if rate is None or rate < 0 else float(rate)
            hosts[key] = host
        out[cl["name"]] = hosts
    return out


def envoy_reset_counters(admin_port: int) -> None:
    """``POST /reset_counters``: zero the counters of ``/stats`` (not ``/clusters``' per-host ones)."""
    body = _admin(admin_port, "/reset_counters", method="POST")
    if body.strip() != b"OK":
        raise RuntimeError(f"envoy admin {admin_port}: /reset_counters answered {body[:200]!r}")


# --------------------------------------------------------------------------- HAProxy


def haproxy_command(socket_path: str | Path, command: str, *, timeout_s: float = 2.0) -> str:
    """Send one command to HAProxy's admin socket; return its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(socket_path))
        s.sendall(command.rstrip("\n").encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def haproxy_stats(socket_path: str | Path) -> list[dict[str, str]]:
    """``show stat``: one dict per frontend, backend and server row, keyed by the CSV header."""
    text = haproxy_command(socket_path, "show stat")
    if not text.startswith("# "):
        raise RuntimeError(f"haproxy {socket_path}: unexpected 'show stat' answer {text[:200]!r}")
    rows = csv.DictReader(io.StringIO(text[2:]))
    return [{k: v for k, v in row.items() if k} for row in rows if row.get("pxname")]


def haproxy_server_stats(socket_path: str | Path, backend: str = "gateways") -> dict[str, dict[str, int]]:
    """``{server: {"scur", "stot", "bin", "bout"}}`` for the servers of ``backend``."""
    out = {}
    for row in haproxy_stats(socket_path):
        if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND"):
            out[row["svname"]] = {k: int(row[k] or 0) for k in ("scur", "stot", "bin", "bout")}
    return out


# --------------------------------------------------------------------------- Redis


class RedisError(RuntimeError):
    """Redis answered with an error reply (``-ERR ...``)."""


def _read_reply(f) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"redis closed the connection mid-reply ({line!r})")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisError(body.decode("utf-8", "replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "surrogateescape")
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"not a RESP reply: {line!r}")


def redis_command(port: int, *args: str | bytes | int | float, timeout_s: float = 2.0) -> Any:
    """Run one command on the Redis at 127.0.0.1:``port``, RESP2, one connection.

    Returns ``str`` (simple and bulk strings), ``int``, ``None`` or a list.

    Raises:
        RedisError: an error reply.
    """
    if not args:
        raise ValueError("redis_command needs a command")
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        data = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((LOCALHOST, port), timeout=timeout_s) as s:
        s.sendall(b"".join(parts))
        with s.makefile("rb") as f:
            return _read_reply(f)


def _value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def redis_info(port: int, section: str = "commandstats") -> dict[str, Any]:
    """``INFO <section>`` parsed: ``{key: value}``; a value ``a=1,b=2`` becomes ``{"a": 1, "b": 2}``.

    E.g. ``redis_info(p)["cmdstat_set"]["calls"]``.
    """
    out: dict[str, Any] = {}
    for line in redis_command(port, "INFO", section).splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, raw = line.partition(":")
        if "=" in raw:
            out[key] = {k: _value(v) for k, _, v in (p.partition("=") for p in raw.split(","))}
        else:
            out[key] = _value(raw)
    return out
