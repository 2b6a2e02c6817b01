"""The regional L4 balancer of fleetsim as a real HAProxy 2.6 configuration.

The simulator's balancer node (:mod:`sim.components.balancer`) picks a
gateway per *connection* and then relays bytes; HAProxy in ``mode tcp`` does
exactly that, so each gateway instance (a real Envoy) is one ``server`` of
one ``backend``.

Mapping (``sim.config.models.Balancer`` -> HAProxy)
    - ``policy: round_robin`` -> ``balance roundrobin``. HAProxy starts at the
      first server, the simulator at a random one: the same rotation, shifted.
    - ``policy: random`` -> ``balance random(1)``: one uniform draw per
      connection, as the simulator does. (Plain ``balance random`` in HAProxy
      >= 2.0 draws *two* servers and takes the less loaded one.)
    - ``policy: least_connections`` -> ``balance leastconn``: the fewest
      active connections, ties shared round-robin. The simulator releases a
      connection when its response reaches the client, one hop after HAProxy
      would.
    - ``cross_zone``: no counterpart. The reference fleet runs on one loopback
      host with one balancer node, so every gateway is "in its zone";
      experiments that depend on cross-zone routing cannot be checked here.
    - Gateways that are down: the simulator skips them at once (it knows); a
      real balancer learns it from health checks, so ``check=True`` adds
      ``check inter 1s`` to every server (off by default: a check is extra
      traffic the simulator does not model).

Everything listens on 127.0.0.1. ``global`` has no ``daemon``: the harness
runs ``haproxy -db`` in the foreground and owns its pid. The admin socket
(``stats socket``, ``level admin``) answers ``show stat``
(:func:`reference_gateway.measure.haproxy_stats`).
"""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

from sim.config.models import Balancer
from sim.files import atomic_write_text

from .harness import haproxy_binary
from .measure import haproxy_command

LOCALHOST = "127.0.0.1"
BACKEND = "gateways"
BALANCE = {"round_robin": "roundrobin", "random": "random(1)", "least_connections": "leastconn"}
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAXCONN = 20000
# HAProxy needs two descriptors per connection plus a few dozen of its own.
_FD_RESERVE = 100
# The kernel's limit for a unix socket path (sun_path, 108 bytes with the NUL).
_MAX_SOCKET_PATH = 107


def _ms(seconds: float, what: str) -> str:
    if seconds <= 0:
        raise ValueError(f"{what} must be positive, got {seconds}")
    return f"{max(1, round(seconds * 1000))}ms"


def _port(port: int, what: str) -> int:
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{what}: port {port!r} out of range 1-65535")
    return port


def max_maxconn() -> int:
    """The largest ``maxconn`` HAProxy can start with here: (hard RLIMIT_NOFILE - 100) / 2.

    HAProxy raises its descriptor limit to 2 x maxconn + its own and refuses
    to start ("Cannot raise FD limit") when the hard limit is lower.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 1_000_000
    return max(1, (hard - _FD_RESERVE) // 2)


def haproxy_config(balancer: Balancer, gateways: list[tuple[str, int]], *, listen_port: int,
                   stats_socket: str | Path, maxconn: int | None = None, connect_timeout_s: float = 5.0,
                   client_timeout_s: float = 60.0, server_timeout_s: float = 60.0,
                   check: bool = False, nbthread: int | None = None) -> str:
    """The text of ``haproxy.cfg``: one TCP frontend on 127.0.0.1:``listen_port``, one backend.

    ``gateways``: ``(server name, port)`` per gateway instance, each on
    127.0.0.1. ``maxconn``: concurrent connections (global and frontend);
    default :data:`MAXCONN` or, when the descriptor limit is lower,
    :func:`max_maxconn`. ``nbthread``: HAProxy threads (default: one per CPU it may
    use).

    Raises:
        ValueError: no gateways, a repeated or malformed name, a bad port,
        a non-positive timeout, a maxconn below 1 or above
        :func:`max_maxconn`, a socket path too long.
    """
    if maxconn is None:
        maxconn = min(MAXCONN, max_maxconn())
    if not gateways:
        raise ValueError("haproxy_config needs at least one gateway")
    if not 1 <= maxconn <= max_maxconn():
        raise ValueError(f"maxconn {maxconn} out of range 1-{max_maxconn()} (HAProxy needs "
                         "2 descriptors per connection; raise the hard RLIMIT_NOFILE for more)")
    if nbthread is not None and nbthread < 1:
        raise ValueError(f"nbthread must be >= 1, got {nbthread}")
    socket_path = str(stats_socket)
    if len(socket_path.encode()) > _MAX_SOCKET_PATH or any(c.isspace() for c in socket_path):
        raise ValueError(f"stats_socket {socket_path!r}: at most {_MAX_SOCKET_PATH} bytes, no spaces")
    seen: set[str] = set()
    for name, port in gateways:
        if not _SERVER_NAME.match(name):
            raise ValueError(f"gateway name {name!r}: letters, digits, '.', '_' or '-' only")
        if name in seen:
            raise ValueError(f"gateway name {name!r} appears twice")
        seen.add(name)
        _port(port, f"gateway {name!r}")
    _port(listen_port, "listen_port")
    lines = [
        "# Generated by reference_gateway.haproxy_config: fleetsim's L4 balancer.",
        "global",
        f"    maxconn {maxconn}",
        f"    stats socket {socket_path} mode 600 level admin",
    ]
    if nbthread is not None:
        lines.append(f"    nbthread {nbthread}")
    lines += [
        "",
        "defaults",
        "    mode tcp",
        f"    timeout connect {_ms(connect_timeout_s, 'connect_timeout_s')}",
        f"    timeout client {_ms(client_timeout_s, 'client_timeout_s')}",
        f"    timeout server {_ms(server_timeout_s, 'server_timeout_s')}",
        "",
        "frontend balancer",
        f"    bind {LOCALHOST}:{listen_port}",
        f"    maxconn {maxconn}",
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        f"    balance {BALANCE[balancer.policy]}",
    ]
    suffix = " check inter 1s" if check else ""
    lines += [f"    server {name} {LOCALHOST}:{port}{suffix}" for name, port in gateways]
    return "\n".join(lines) + "\n"


def write_haproxy_config(path: str | Path, balancer: Balancer, gateways: list[tuple[str, int]],
                         **kwargs) -> str:
    """Write :func:`haproxy_config` to ``path`` atomically; return the text."""
    text = haproxy_config(balancer, gateways, **kwargs)
    atomic_write_text(Path(path), text)
    return text


def haproxy_argv(config_path: str | Path) -> list[str]:
    """Run HAProxy in the foreground (``-db``) on ``config_path``."""
    return [str(haproxy_binary()), "-f", str(config_path), "-db"]


def haproxy_ready(stats_socket: str | Path) -> bool:
    """The admin socket answers ``show info``: the configuration is loaded and the frontend bound.

    Better than probing the frontend, which would open a connection to a
    gateway and count in its ``stot``.
    """
    try:
        return "Name: HAProxy" in haproxy_command(stats_socket, "show info", timeout_s=0.5)
    except OSError:
        return False


def check_config(path: str | Path) -> None:
    """``haproxy -c -f path``.

    Raises:
        ValueError: HAProxy rejects the file; the message is HAProxy's.
    """
    r = subprocess.run([str(haproxy_binary()), "-c", "-f", str(path)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise ValueError(f"haproxy rejects {path}:\n{(r.stdout + r.stderr).strip()}")
