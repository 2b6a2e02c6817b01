"""The reference fleet's own servers: ``reference_gateway.backend`` and ``reference_gateway.loadgen``.

Real processes on free loopback ports. Every backend is started by the
``backend`` fixture and stopped by its pid (SIGTERM, then SIGKILL after a
timeout); the fixture then checks that none of its ports still accepts a
connection.

Deterministic checks use constant service times. Stochastic ones are seeded
(so they are reproducible) and compared with closed forms at the 99.9% level:
the binomial interval of an error count, the normal interval of a mean of
exponential service times (n = 2000, so the central limit is tight), the
Poisson interval of an arrival count. Timing checks allow for uvloop's 1 ms
timer granularity plus the scheduling noise of a shared two-core machine,
stated where used.
"""

from __future__ import annotations

import json
import math
import select
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from reference_gateway.backend import load_spec
from reference_gateway.loadgen import load_result, run_load

#: Real servers, timed: `make test` runs these alone, after the rest (pyproject.toml markers).
pytestmark = pytest.mark.realfleet

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: Two-sided 99.9% standard normal quantile.
Z_999 = 3.2905267314919255
#: Scheduling noise allowed on a timed event (s): uvloop timers fire within ~1 ms,
#: the rest is a busy shared machine.
SLACK_S = 0.06


# --------------------------------------------------------------------------- helpers


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Terminate ``proc`` by its pid, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def instance(name: str, port: int, **kw) -> dict:
    spec = {"name": name, "port": port, "workers": 1, "queue_limit": 10,
            "service_time_s": {"dist": "constant", "value": 0.001}, "response_bytes": 100}
    spec.update(kw)
    return spec


def call(port: int, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body)."""
    conn = HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def read_response(f) -> tuple[int, dict, bytes]:
    """One response from a buffered socket file (Content-Length framing)."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def pipelined(port: int, n: int, conns: int = 4) -> list[int]:
    """Send ``n`` GETs pipelined over ``conns`` connections at once; their statuses."""
    counts = [n // conns + (i < n % conns) for i in range(conns)]
    socks = [socket.create_connection((HOST, port), timeout=30) for _ in range(conns)]
    try:
        for s, k in zip(socks, counts, strict=True):
            s.sendall(b"GET /bulk HTTP/1.1\r\nHost: t\r\n\r\n" * k)
        statuses = []
        for s, k in zip(socks, counts, strict=True):
            f = s.makefile("rb")
            statuses += [read_response(f)[0] for _ in range(k)]
        return statuses
    finally:
        for s in socks:
            s.close()


class Backend:
    """A running ``reference_gateway.backend`` process."""

    def __init__(self, proc: subprocess.Popen, admin_port: int, ports: list[int]):
        self.proc = proc
        self.admin_port = admin_port
        self.ports = ports

    def get(self, path: str) -> dict:
        status, _, body = call(self.admin_port, path)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, obj: dict | None = None) -> tuple[int, dict]:
        status, _, body = call(self.admin_port, path, "POST", json.dumps(obj or {}).encode())
        return status, json.loads(body)

    def stats(self, name: str) -> dict:
        return self.get("/stats")["instances"][name]

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert self.proc.returncode == 0, f"backend did not exit cleanly on SIGTERM: {self.proc.returncode}"
        for port in [self.admin_port, *self.ports]:
            assert not accepts(port), f"port {port} still accepts connections after the backend stopped"


def spawn_backend(spec_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reference_gateway.backend", "--spec", str(spec_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            start_new_session=True)


def wait_ready(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """The first stdout line of ``proc`` (READY ...), or fail with its stderr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline().decode()
        if proc.poll() is not None:
            pytest.fail(f"backend exited with {proc.returncode}: {proc.stderr.read().decode()}")
    stop_process(proc)
    pytest.fail(f"backend not ready within {timeout} s")


@pytest.fixture
def backend(tmp_path):
    """Start backends: ``backend([instance dicts], seed=...)``; all are stopped at teardown."""
    started: list[Backend] = []

    def start(instances: list[dict], seed: int = 7) -> Backend:
        admin_port, = free_ports(1)
        spec = {"admin_port": admin_port, "seed": seed, "instances": instances}
        path = tmp_path / f"backend{len(started)}.json"
        path.write_text(json.dumps(spec))
        proc = spawn_backend(path)
        b = Backend(proc, admin_port, [i["port"] for i in instances])
        started.append(b)
        assert wait_ready(proc).split() == ["READY", str(admin_port)]
        return b

    yield start
    for b in started:
        b.stop()


def loadgen_spec(port: int, rate: float, duration_s: float, **kw) -> dict:
    spec = {"target": f"{HOST}:{port}", "path": "/api/x", "seed": 3,
            "rate_schedule": [{"at_s": 0, "rate_per_s": rate}], "duration_s": duration_s,
            "timeout_s": 2.0, "max_requests": 100_000}
    spec.update(kw)
    return spec


def run_loadgen_cli(tmp_path: Path, spec: dict, timeout: float = 60) -> tuple[subprocess.CompletedProcess, Path]:
    spec_path = tmp_path / "load.json"
    spec_path.write_text(json.dumps(spec))
    out = tmp_path / "out.npz"
    proc = subprocess.run([sys.executable, "-m", "reference_gateway.loadgen", "--spec", str(spec_path),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    return proc, out


# --------------------------------------------------------------------------- backend


def test_backend_serves_counts_and_resets(backend):
    port, = free_ports(1)
    b = backend([instance("api-az1-0", port, workers=2, response_bytes=333)])
    assert call(b.admin_port, "/ready")[::2] == (200, b"ok")

    for headers in ({"x-fleetsim-gateway": "gw-a"}, {"x-fleetsim-gateway": "gw-a"}, {}):
        status, head, body = call(port, "/api/x", headers=headers)
        assert (status, head["content-length"], len(body)) == (200, "333", 333)
    assert call(port, "/healthz")[0] == 200
    # A body is read and discarded; the next request on the connection is still parsed.
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(b"POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                  b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
        f = s.makefile("rb")
        first, second = read_response(f), read_response(f)
        assert (first[0], second[0], second[1].get("connection")) == (200, 200, "close")
        assert f.read() == b"", "the connection must close after the Connection: close answer"

    st = b.stats("api-az1-0")
    # The third pipelined request came after Connection: close: never read, never counted.
    assert st["requests"] == 6
    assert st["responses"] == {"200": 6, "500": 0, "503": 0}
    assert st["served"] == 6 and st["rejected"] == 0
    assert st["health_checks"] == 1
    assert st["by_gateway"] == {"gw-a": 2, "-": 4}
    assert st["requested_service_s"] == pytest.approx(6 * 0.001)
    assert st["overshoot_n"] == 6 and len(b.get("/overshoot")["api-az1-0"]) == 6
    assert st["busy_s"] == pytest.approx(st["service_time_sum_s"])  # nothing in service now
    assert call(b.admin_port, "/nope")[0] == 404
    assert call(b.admin_port, "/reset")[0] == 405

    assert b.post("/reset")[0] == 200
    st = b.stats("api-az1-0")
    assert (st["requests"], st["served"], st["health_checks"], st["by_gateway"], st["overshoot_n"]) == \
        (0, 0, 0, {}, 0)
    assert st["responses"] == {"200": 0, "500": 0, "503": 0}
    assert b.get("/overshoot") == {"api-az1-0": []}


def test_queue_limit_rejects_and_serves_fifo(backend):
    port, = free_ports(1)
    b = backend([instance("q", port, workers=1, queue_limit=1, service_time_s=0.2)])
    socks = [socket.create_connection((HOST, port), timeout=10) for _ in range(4)]
    results: list[tuple[int, float]] = [None] * 4

    def read(k: int) -> None:
        results[k] = (read_response(socks[k].makefile("rb"))[0], time.perf_counter() - t0)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
    t0 = time.perf_counter()
    for s in socks:
        s.sendall(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for s in socks:
        s.close()
    ok = sorted(t for status, t in results if status == 200)
    rejected = [t for status, t in results if status == 503]
    assert len(ok) == 2 and len(rejected) == 2, results
    # One worker, one waiting slot: the 3rd and 4th arrivals find both taken and are
    # answered at once; the queued one starts when the first ends, 0.2 s later.
    assert max(rejected) < 0.2 - SLACK_S
    assert ok[0] == pytest.approx(0.2, abs=SLACK_S)
    assert ok[1] - ok[0] == pytest.approx(0.2, abs=SLACK_S)
    st = b.stats("q")
    assert (st["requests"], st["served"], st["rejected"], st["max_queue"]) == (4, 2, 2, 1)
    assert st["responses"] == {"200": 2, "500": 0, "503": 2}
    assert st["requested_service_s"] == pytest.approx(0.4)


def test_error_probability_matches_binomial(backend):
    port, = free_ports(1)
    p, n = 0.3, 2000
    b = backend([instance("e", port, workers=8, queue_limit=n, service_time_s=0.0,
                          error_probability=p)], seed=11)
    statuses = np.array(pipelined(port, n))
    errors = int((statuses == 500).sum())
    assert set(statuses.tolist()) <= {200, 500}
    lo, hi = stats.binom.interval(0.999, n, p)
    assert lo <= errors <= hi, f"{errors} errors in {n}, 99.9% interval [{lo:g}, {hi:g}]"
    st = b.stats("e")
    assert st["responses"] == {"200": n - errors, "500": errors, "503": 0}


def test_fault_changes_service_and_errors_then_clears(backend):
    p1, p2 = free_ports(2)
    b = backend([instance("f1", p1, service_time_s=0.05), instance("f2", p2, service_time_s=0.05)])
    status, state = b.post("/fault", {"instances": ["f1"], "service_time_factor": 4.0, "error_probability": 1.0})
    assert status == 200
    assert state["instances"]["f1"] == {"service_time_factor": 4.0, "error_probability": 1.0, "faulted": True}
    assert state["instances"]["f2"]["faulted"] is False

    t0 = time.perf_counter()
    assert call(p1, "/api/x")[0] == 500
    assert time.perf_counter() - t0 >= 0.2 - 0.002  # a timer may fire up to ~1 ms early
    assert call(p2, "/api/x")[0] == 200  # the other instance is untouched
    assert b.stats("f1")["requested_service_s"] == pytest.approx(0.2)
    assert b.stats("f2")["requested_service_s"] == pytest.approx(0.05)

    status, state = b.post("/fault", {"clear": True})
    assert status == 200 and state["instances"]["f1"]["faulted"] is False
    assert call(p1, "/api/x")[0] == 200
    assert b.stats("f1")["requested_service_s"] == pytest.approx(0.25)

    status, body = b.post("/fault", {"service_time_factor": 0})
    assert status == 400 and "service_time_factor" in body["error"]
    status, body = b.post("/fault", {"instances": ["nope"]})
    assert status == 400 and "nope" in body["error"]


def test_mean_service_time_matches_exponential(backend):
    port, = free_ports(1)
    mean, n = 0.005, 2000
    b = backend([instance("m", port, workers=16, queue_limit=n,
                          service_time_s={"dist": "exponential", "mean": mean})], seed=5)
    assert pipelined(port, n) == [200] * n
    st = b.stats("m")
    assert st["served"] == n
    over = np.array(b.get("/overshoot")["m"])
    assert len(over) == n and np.isfinite(over).all()
    assert abs(over.mean()) < 0.005
    assert over.mean() == pytest.approx(st["overshoot_mean_s"], abs=1e-9)
    # The exponential's sd equals its mean; with n = 2000 the sample mean is normal
    # to a good approximation: 99.9% half-width z * mean / sqrt(n) ~ 0.37 ms.
    half = Z_999 * mean / math.sqrt(n)
    served_mean = st["service_time_sum_s"] / n
    assert served_mean == pytest.approx(mean + over.mean(), abs=half)
    assert st["requested_service_s"] / n == pytest.approx(mean, abs=half)


def test_backend_rejects_bad_spec_and_busy_port(tmp_path):
    port, admin = free_ports(2)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"admin_port": admin, "instances": [
        {"name": "x", "workers": 1, "queue_limit": 1, "service_time_s": 0.1}]}))
    with pytest.raises(ValueError, match=r"instances\.0\.port: Field required"):
        load_spec(bad)
    bad.write_text(json.dumps({"admin_port": admin, "instances": [instance("x", port, workers=0)]}))
    with pytest.raises(ValueError, match=r"instances\.0\.workers"):
        load_spec(bad)
    bad.write_text(json.dumps({"admin_port": admin, "instances": [
        instance("x", port, service_time_s={"dist": "exponential", "mean": -1})]}))
    with pytest.raises(ValueError, match=r"instances\.0\.service_time_s"):
        load_spec(bad)
    bad.write_text(json.dumps({"admin_port": admin, "instances": [instance("x", port), instance("y", port)]}))
    with pytest.raises(ValueError, match=r"instances\.1\.port: port \d+ is already used by instance x"):
        load_spec(bad)
    proc = subprocess.run([sys.executable, "-m", "reference_gateway.backend", "--spec", str(bad)],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert proc.returncode == 2 and "instances.1.port" in proc.stderr

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"admin_port": admin, "instances": [instance("held", port)]}))
    with socket.socket() as held:
        held.bind((HOST, port))
        held.listen()
        proc = spawn_backend(good)
        try:
            assert proc.wait(30) == 1
        finally:
            stop_process(proc)
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
    assert f"instance held: cannot listen on 127.0.0.1:{port}" in err
    assert not accepts(admin)


# --------------------------------------------------------------------------- load generator


def test_loadgen_deterministic_rate_and_output(backend, tmp_path):
    port, = free_ports(1)
    service_s = 0.002
    b = backend([instance("lg", port, workers=8, queue_limit=1000, service_time_s=service_s)])
    proc, out = run_loadgen_cli(tmp_path, loadgen_spec(port, 200, 2.0, arrivals="deterministic"))
    assert proc.returncode == 0, proc.stderr
    res = load_result(out)
    n = len(res["status"])
    assert proc.stdout.split() == ["DONE", str(n), str(n)]
    # Evenly spaced at 1/200 s from t = 0.005: 400 arrivals before 2 s, give or take
    # the last one (sums of 0.005 are not exact in binary).
    assert abs(n - 400) <= 1
    assert set(res) == {"t_sched", "t_sent", "latency", "status", "meta"}
    assert res["status"].dtype == np.int16 and (res["status"] == 200).all()
    assert np.allclose(np.diff(res["t_sched"]), 1 / 200)
    assert (res["t_sent"] >= res["t_sched"]).all()
    # Every answer took at least its service: the requested 2 ms plus the timer's
    # overshoot, which may be negative (timers fire up to ~1 ms early).
    min_over = min(b.get("/overshoot")["lg"])
    assert res["latency"].min() >= service_s + min_over - 1e-4
    meta = res["meta"]
    assert meta["requests"] == meta["completed"] == meta["sent"] == n
    assert meta["failed"] == 0 and meta["status_counts"] == {"200": n}
    assert meta["expected_requests"] == pytest.approx(400)
    assert meta["processes"] == 1 and meta["connections_opened"] >= 1
    assert 0 <= meta["lateness_p50_s"] <= meta["lateness_p99_s"] <= meta["lateness_max_s"]
    assert meta["lateness_p99_s"] < 0.05, meta  # 200/s is far below what one process sustains
    assert b.stats("lg")["requests"] == n


def test_loadgen_poisson_count(backend, tmp_path):
    port, = free_ports(1)
    b = backend([instance("lp", port, workers=8, queue_limit=1000, service_time_s=0.001)])
    meta = run_load(loadgen_spec(port, 300, 3.0), tmp_path / "p.npz")
    res = load_result(tmp_path / "p.npz")
    n = meta["requests"]
    lo, hi = stats.poisson.interval(0.999, 900)
    assert lo <= n <= hi, f"{n} arrivals, 99.9% Poisson interval of 900: [{lo:g}, {hi:g}]"
    assert (res["status"] == 200).all() and meta["completed"] == n
    assert np.all(np.diff(res["t_sched"]) >= 0) and res["t_sched"].max() < 3.0
    assert b.stats("lp")["requests"] == n


def test_loadgen_two_processes_merge(backend, tmp_path):
    port, = free_ports(1)
    backend([instance("l2", port, workers=8, queue_limit=1000, service_time_s=0.001)])
    meta = run_load(loadgen_spec(port, 200, 2.0, arrivals="deterministic", processes=2),
                    tmp_path / "two.npz")
    res = load_result(tmp_path / "two.npz")
    n = len(res["t_sched"])
    # Two workers at 100/s each, out of phase: together the one evenly spaced stream.
    assert meta["processes"] == 2 and abs(n - 400) <= 2
    assert np.allclose(res["t_sched"], (np.arange(n) + 1) / 200)
    assert (res["status"] == 200).all() and meta["completed"] == n


def test_loadgen_timeouts_pool_cap_and_backend_abandoned(backend, tmp_path):
    p_slow, p_serial = free_ports(2)
    b = backend([instance("slow", p_slow, workers=1, queue_limit=100, service_time_s=0.5),
                 instance("serial", p_serial, workers=1, queue_limit=100, service_time_s=0.02)])

    # Four requests at 0.05 s intervals, client timeout 0.1 s, one worker busy for 0.5 s
    # with the first: every request fails at its deadline (status 0, its connection
    # closed); the backend serves the first to a client gone and, when it ends, finds
    # the three queued requests' clients gone too.
    timeout_s = 0.1
    meta = run_load(loadgen_spec(p_slow, 20, 0.21, arrivals="deterministic", timeout_s=timeout_s),
                    tmp_path / "slow.npz")
    res = load_result(tmp_path / "slow.npz")
    assert len(res["status"]) == 4 and (res["status"] == 0).all()
    assert meta["timeouts"] == 4 and meta["completed"] == 0
    # The deadline is checked every 10 ms.
    assert ((res["latency"] >= timeout_s) & (res["latency"] <= timeout_s + 0.01 + SLACK_S)).all()
    deadline = time.monotonic() + 5
    while b.stats("slow")["served"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    st = b.stats("slow")
    assert (st["requests"], st["served"], st["wasted"], st["abandoned"], st["queued"]) == (4, 1, 1, 3, 0)
    assert st["requested_service_s"] == pytest.approx(0.5)

    # One connection allowed: requests every 10 ms, each served for 20 ms, wait for the
    # connection in turn. Open loop: latency counts from the scheduled time, so it grows
    # by ~10 ms per request instead of staying at the 20 ms service time.
    meta = run_load(loadgen_spec(p_serial, 100, 0.2, arrivals="deterministic", max_connections=1),
                    tmp_path / "serial.npz")
    res = load_result(tmp_path / "serial.npz")
    n = len(res["status"])
    assert abs(n - 20) <= 1 and (res["status"] == 200).all()
    assert meta["connections_opened"] == 1 and meta["max_connections_open"] == 1
    done = res["t_sched"] + res["latency"]
    assert (res["t_sent"][1:] >= done[:-1]).all()  # each waits for the one before
    assert (np.diff(done) >= 0.02 - 0.0015).all()  # serial 20 ms services (timers: ~1 ms early at most)
    assert res["latency"][-1] >= 0.02 * n - res["t_sched"][-1] + 0.01 - 0.0015 * n
    assert res["latency"][-1] > 5 * res["latency"][0]


def test_loadgen_unreachable_target_records_status_zero(backend, tmp_path):
    port, = free_ports(1)
    b = backend([instance("gone", port)])
    b.stop()  # the fleet is down: the connection is refused
    duration_s, timeout_s = 1.0, 0.5
    t0 = time.perf_counter()
    proc, out = run_loadgen_cli(tmp_path, loadgen_spec(port, 50, duration_s, timeout_s=timeout_s))
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert "warning: cannot connect" in proc.stderr
    res = load_result(out)
    n = len(res["status"])
    assert n > 0 and (res["status"] == 0).all()
    assert proc.stdout.split() == ["DONE", str(n), "0"]
    # Refusals fail at once: each failure time is within its deadline.
    assert (res["latency"] <= timeout_s + SLACK_S).all()
    # Bound: start delay + duration + timeout + 5 s hard stop + ~1 s of interpreter start.
    assert elapsed < 0.2 + duration_s + timeout_s + 5 + 5


@pytest.mark.parametrize("change, field", [
    ({"target": None}, "target: Field required"),
    ({"rate_schedule": [{"at_s": 0, "rate_per_s": -5}]}, "rate_schedule.0.rate_per_s"),
    ({"rate_schedule": [{"at_s": 1, "rate_per_s": 5}]}, "rate_schedule.0.at_s"),
    ({"duration_s": 0}, "duration_s"),
    ({"target": "localhost"}, "target"),
])
def test_loadgen_bad_spec(tmp_path, change, field):
    spec = loadgen_spec(free_ports(1)[0], 10, 1.0)
    spec.update(change)
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        run_load(spec, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_loadgen_cli_bad_spec_exits_nonzero(tmp_path):
    spec = loadgen_spec(free_ports(1)[0], -5, 1.0)
    del spec["target"]
    proc, out = run_loadgen_cli(tmp_path, spec)
    assert proc.returncode == 2
    assert "target: Field required" in proc.stderr and "rate_schedule.0.rate_per_s" in proc.stderr
    assert not out.exists()


def test_backend_and_load_generator_start_light():
    """They start before every run: importing them must not pull in the simulator's runner or SciPy.

    (Pulling in sim.runner once cost 1.8 s at start-up, longer than the lead
    the fleet gave the generator, which then sent its first second of
    requests in one burst.)
    """
    code = ("import sys, reference_gateway.loadgen, reference_gateway.backend; "
            "print(sorted(m for m in ('scipy', 'sim.runner.run', 'sim.fleet', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
