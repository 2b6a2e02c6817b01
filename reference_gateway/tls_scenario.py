"""Validation scenario (t): TLS session resumption and handshake CPU on real Envoys.

HAProxy (TCP, round robin or random) in front of three Envoy 1.40 gateways
that terminate TLS with a throwaway self-signed ECDSA P-256 certificate
(made with ``openssl`` in a temporary directory at run time, never kept),
each either with its own ticket keys (Envoy's default) or all with the same
``session_ticket_keys`` (one 80-byte key file, also temporary). A Python
client (``ssl``) opens a new connection for each request through HAProxy,
as one of ``clients`` clients picked uniformly at random (seeded), offering
that client's ticket: the one from its previous connection (``latest``) or
the first it got, until it expires (``first``); it records whether each
connection resumed (``SSLSocket.session_reused``).

Measured (:func:`real_observations`): the resumption rate from each
Envoy's listener stats (``ssl.handshake``, ``ssl.session_reused``); the
Envoys' CPU per connection (their threads' ``schedstat``); before that, in
each repetition, phases on the same Envoys of only full handshakes (the
client offers no ticket) and, with shared keys and round robin, of only
resumed ones, each giving the CPU of a connection of that kind (its one
request included). Simulated
(:func:`sim_observation`): ``experiments/reference/t_tls.yaml`` at the same
variant, with the handshake CPU that ``fleetsim calibrate`` measured in
phases like these, on these three Envoys with shared keys, in runs of its
own (:func:`reference_gateway.calibrate.tls_connection_cpu` says why). So
the CPU per handshake type checks that the calibration holds from run to
run; the resumption rates and the CPU per connection check the model: which
connections resume, and what that mix costs, at the machine's speed of the
moment (:func:`machine_speed`). Every
measurement starts after a warm-up of a few connections per Envoy. Goals (issue #12): resumption rate within 3 points; CPU per
handshake type within 15%; total gateway CPU (here per connection: the same
relative error for the same connections) within 10%.

Run by ``fleetsim validate --scenario t``.
"""

from __future__ import annotations

import json
import math
import os
import random  # noqa: TID251 - the load generator's own seeded choice of client, not the simulator's
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sim.config.models import Experiment

from . import envoy_config
from .fleet import RealFleet
from .harness import envoy_base_id, envoy_binary, http_ready
from .measure import Busyness, envoy_stats, proc_cpu_ns
from .scenarios import Observation

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "reference" / "t_tls.yaml"
TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
#: Connections per Envoy before any measurement (:meth:`TlsRealFleet.warm_up`).
WARM_UP_PER_ENVOY = 20


def make_secrets(folder: Path) -> dict[str, Path]:
    """A throwaway self-signed ECDSA P-256 certificate and an 80-byte ticket key in ``folder``."""
    cert, key, ticket = folder / "cert.pem", folder / "key.pem", folder / "ticket.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=30)
    ticket.write_bytes(os.urandom(80))
    for p in (cert, key, ticket):
        p.chmod(0o600)
    return {"cert": cert, "key": key, "ticket": ticket}


def add_tls(boot: dict, secrets: dict[str, Path], tls, shared: bool) -> dict:
    """Terminate TLS on the bootstrap's listener (``tls``: the pool's TlsListener)."""
    version = tls.tls_version
    ctx: dict = {
        "@type": TLS_TYPE,
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": version, "tls_maximum_protocol_version": version},
            "tls_certificates": [{"certificate_chain": {"filename": str(secrets["cert"])},
                                  "private_key": {"filename": str(secrets["key"])}}],
        },
        "session_timeout": envoy_config.duration(tls.session_timeout_s),
    }
    if shared:
        ctx["session_ticket_keys"] = {"keys": [{"filename": str(secrets["ticket"])}]}
    listener = boot["static_resources"]["listeners"][0]
    chain = listener["filter_chains"][0]
    chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": ctx}
    # One request per connection: close at once after the response (Envoy's default waits 1 s).
    chain["filters"][0]["typed_config"]["delayed_close_timeout"] = "0s"
    return boot


class TlsRealFleet(RealFleet):
    """The reference fleet with TLS Envoys (started by :meth:`start_envoys`)."""

    def start_envoys(self, exp, secrets: dict[str, Path], shared: bool) -> None:
        envoy = envoy_binary()
        for name, pool_name in self.gateways:
            if name in self.harness.procs:
                self.harness.stop(name)
            pool = exp.topology.gateways[pool_name]
            listen, admin = self.envoy_ports[name]
            boot = envoy_config.envoy_bootstrap(pool, exp.topology, listen_port=listen, admin_port=admin,
                                                backend_ports=self.backend_ports, node_id=name)
            add_tls(boot, secrets, pool.tls, shared)
            path = self.run_dir / f"{name}.envoy.json"
            path.write_text(json.dumps(boot))
            argv = envoy_config.envoy_command(envoy, path, pool, base_id=envoy_base_id(admin), log_level="warning")
            self.harness.start(name, argv, ready=lambda a=admin: http_ready(f"http://127.0.0.1:{a}/ready"),
                               cpus=self.gateway_cpus)

    def envoy_cpu_s(self) -> float:
        """CPU seconds of the Envoys' threads (nanosecond schedstat: a connection costs ~1 ms)."""
        return sum(proc_cpu_ns(self.harness[name].pid) for name, _ in self.gateways) / 1e9

    def warm_up(self, version: str) -> None:
        """A few connections through every Envoy before anything is measured: the first handshakes
        after a start pay one-off set-up (tables, allocations) that the simulator has no notion of."""
        load(self.listen_port, WARM_UP_PER_ENVOY * len(self.gateways), 1, "latest", version, seed=0, offer=False)

    def ssl_counts(self) -> tuple[int, int]:
        """(handshakes, resumed) over the Envoys' listeners."""
        hs = reused = 0
        for name, _ in self.gateways:
            st = envoy_stats(self.envoy_ports[name][1], filter=r"^listener\..*ssl\.(handshake|session_reused)$")
            hs += sum(v for k, v in st.items() if k.endswith("ssl.handshake"))
            reused += sum(v for k, v in st.items() if k.endswith("ssl.session_reused"))
        return hs, reused


def load(port: int, connections: int, clients: int, policy: str, version: str, seed: int,
         offer: bool = True, lifetime_s: float = 7200.0) -> dict:
    """``connections`` TLS connections of one request each through ``port``; see the module docstring."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    v = ssl.TLSVersion.TLSv1_3 if version == "TLSv1_3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    rng = random.Random(seed)
    held: list = [None] * clients
    issued_at = [0.0] * clients
    resumed = failed = 0
    request = b"GET /api/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    for _ in range(connections):
        c = rng.randrange(clients)
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=held[c] if offer else None)
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                failed += 1
            if s.session_reused:
                resumed += 1
            new = s.session  # TLS 1.3: the newest ticket, read after the response
            now = time.monotonic()
            # As sim.components.tls.tickets.offered_after: latest takes every new session;
            # first keeps the one it holds until it expires (2 h, longer than any run here).
            if policy == "latest" or held[c] is None or now - issued_at[c] >= lifetime_s:
                held[c], issued_at[c] = new, now
            s.close()
        except (OSError, ssl.SSLError):
            failed += 1
            raw.close()
    return {"connections": connections, "resumed_client": resumed, "failed": failed}


def connections(exp: Experiment) -> int:
    """How many connections a run of ``exp`` opens: its rate times its length (one request each)."""
    return round(exp.workload.rate_schedule[0].rate_per_s * exp.duration_s)


def runs_phases(exp: Experiment) -> bool:
    """Whether a variant also measures CPU per handshake type (shared keys, round robin: every offered
    ticket resumes, so a phase of offered tickets is a phase of resumed handshakes)."""
    return (exp.topology.gateways["gw"].tls.session_ticket_keys_scope != "instance"
            and exp.topology.balancers["local"].policy == "round_robin")


@contextmanager
def secrets_dir():
    """A temporary folder with :func:`make_secrets` in it, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="fleetsim-tls-") as tmp:
        yield make_secrets(Path(tmp))


def connection_cpu(fleet: TlsRealFleet, n: int, version: str, kinds=("full", "resumed")) -> dict[str, dict]:
    """Envoy CPU per connection of ``n`` connections with only full handshakes (no ticket offered),
    then ``n`` offering the latest ticket (resumed wherever the Envoys share keys), one client."""
    out = {}
    for kind in kinds:
        c0 = fleet.envoy_cpu_s()
        h0, r0 = fleet.ssl_counts()
        busy = Busyness().start(fleet._pids())
        res = load(fleet.listen_port, n, 1, "latest", version, seed=1, offer=kind == "resumed")
        cpu = fleet.envoy_cpu_s() - c0
        quiet = busy.stop()
        h1, r1 = fleet.ssl_counts()
        out[kind] = {"cpu_per_conn_s": cpu / n, "resumed": (r1 - r0) / max(1, h1 - h0), "failed": res["failed"],
                     "disturbed_by": None if quiet.trustworthy else quiet.reason}
    return out


def real_observations(exp: Experiment, run_dir: Path, repetitions: int, done: int, *, pin: bool = True,
                      log=print) -> Iterator[Observation]:
    """Repetitions ``done`` .. ``repetitions`` - 1 of one variant on the real fleet (one fleet, its Envoys
    restarted for each: new keys), each yielded as soon as it is measured.

    Each repetition: the Envoys started and warmed up; the CPU of connections with only full
    handshakes (and, where every offered ticket resumes, only resumed ones), half as many as the
    variant's; then the variant's own connections.
    """
    n = connections(exp)
    tls = exp.topology.gateways["gw"].tls
    kinds = ("full", "resumed") if runs_phases(exp) else ("full",)
    with secrets_dir() as secrets, TlsRealFleet(exp, run_dir, pin=pin) as fleet:
        for rep in range(done, repetitions):
            log(f"  real run {rep + 1}/{repetitions}: {n} TLS connections, {len(kinds)} x {n // 2} alone")
            fleet.start_envoys(exp, secrets, shared=tls.session_ticket_keys_scope != "instance")
            fleet.warm_up(tls.tls_version)
            phases = connection_cpu(fleet, n // 2, tls.tls_version, kinds)
            h0, r0 = fleet.ssl_counts()
            c0 = fleet.envoy_cpu_s()
            busy = Busyness().start(fleet._pids())
            res = load(fleet.listen_port, n, exp.workload.connections.clients, exp.workload.connections.ticket_policy,
                       tls.tls_version, seed=exp.seed * 1000 + rep)
            cpu = fleet.envoy_cpu_s() - c0
            quiet = busy.stop()
            h1, r1 = fleet.ssl_counts()
            hs = h1 - h0
            obs = Observation(values={"resumption_rate": (r1 - r0) / hs if hs else math.nan,
                                      "cpu_per_connection_ms": 1000 * cpu / n},
                              counts={"resumption_rate": hs})
            for kind, phase in phases.items():
                obs.values[f"cpu_{kind}_handshake_conn_ms"] = 1000 * phase["cpu_per_conn_s"]
            failed = res["failed"] + sum(p["failed"] for p in phases.values())
            disturbed = [p["disturbed_by"] for p in phases.values() if p["disturbed_by"]]
            if not quiet.trustworthy:
                disturbed.append(quiet.reason)
            if failed:
                obs.trustworthy = False
                obs.note = f"{failed} connections failed"
            elif disturbed:
                obs.trustworthy = False
                obs.note = "; ".join(disturbed)
            elif phases["full"]["resumed"] > 0 or phases.get("resumed", {"resumed": 1.0})["resumed"] < 0.99:
                obs.trustworthy = False
                obs.note = "the full and resumed phases were not pure"
            yield obs


def sim_observation(exp: Experiment, result: dict) -> Observation:
    """Scenario t's metrics from one simulated replication (CPU per connection that completed its request)."""
    s = result["summary"]
    cpu = s["gateway_cpu"]["pools"]["gw"]
    ev, sec = cpu["events_by_cause"], cpu["cpu_by_cause_s"]
    values = {"resumption_rate": s["connections"]["resumption_rate"],
              "cpu_per_connection_ms": 1000 * cpu["cpu_s"] / ev["request"]}
    tls = exp.topology.gateways["gw"].tls
    request = sec["request"] / ev["request"]
    values["cpu_full_handshake_conn_ms"] = 1000 * (tls.full_handshake_cpu_s + request)
    if runs_phases(exp):
        values["cpu_resumed_handshake_conn_ms"] = 1000 * (tls.resumed_handshake_cpu_s + request)
    return Observation(values=values)


def machine_speed(real: list[Observation], sim: list[Observation]) -> float:
    """How much more CPU a full-handshake connection took in the real runs than calibrated.

    On a shared machine the CPU an operation takes drifts from run to run
    (here: +-12% between repetitions of the same run minutes apart), which
    is the machine's, not the model's. The real runs measure a phase of
    full handshakes just before their own connections; the ratio of its mean
    to the calibrated figure scales the simulated CPU per connection, so
    that row judges the model's mix of handshakes at the machine's speed of
    the moment. The rows of CPU per handshake type are not scaled: they show
    the drift.
    """
    measured = [o.values["cpu_full_handshake_conn_ms"] for o in real if "cpu_full_handshake_conn_ms" in o.values]
    calibrated = [o.values["cpu_full_handshake_conn_ms"] for o in sim]
    if not measured or not calibrated:
        return 1.0
    return (sum(measured) / len(measured)) / (sum(calibrated) / len(calibrated))
