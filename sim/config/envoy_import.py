"""Import the gateway part of a fleetsim topology from a real Envoy v3 bootstrap.

``fleetsim import-envoy ENVOY.yaml`` reads ``static_resources``: the listeners'
``http_connection_manager`` route configuration and the clusters. It maps

- the *default route* (the first catch-all route, ``prefix: "/"``, of the first
  ``"*"`` virtual host; else the first route with a cluster) to
  :class:`~sim.config.models.Route`: ``timeout``, ``retry_policy`` (the
  virtual host's when the route has none);
- the cluster that route points at (or ``--cluster NAME``) to
  :class:`~sim.config.models.Cluster`: ``lb_policy``,
  ``least_request_lb_config``, the DEFAULT-priority ``circuit_breakers``
  thresholds with ``retry_budget``, ``connect_timeout``, HTTP/2 (the
  deprecated ``http2_protocol_options`` or ``typed_extension_protocol_options``
  ``HttpProtocolOptions.explicit_http_config``) with ``max_concurrent_streams``,
  ``outlier_detection``, the first of ``health_checks`` and
  ``common_lb_config.healthy_panic_threshold`` and ``update_merge_window``.

Everything else is listed as *ignored*, each with its Envoy path and line, so
the user sees what the simulator does not. An unmodelled subtree is reported at
its key, or, while it holds a single key, at that key
(``upstream_connection_options.tcp_keepalive``).

Durations are Envoy's (protobuf JSON) form: a string of seconds with an ``s``
suffix (``"0.25s"``, ``"15s"``) or ``{seconds: N, nanos: N}``. ``"100ms"`` and
bare numbers are refused, as Envoy refuses them.

The pool's ``az`` and ``instances`` are not in an Envoy config. Without
``--az`` the output holds the placeholder AZ ``TODO-az`` with a TODO comment:
a valid name, so the output loads, but ``fleetsim check`` rejects it ("unknown
AZ 'TODO-az'") until it is set. Without ``--instances`` the pool has 1 instance
(also marked TODO). The result is validated as a
:class:`~sim.config.models.GatewayPool` before it is written, and an invalid
value is reported at the Envoy field it came from.

Every problem is a :class:`~sim.config.errors.ConfigError` with one
``FILE:LINE: envoy.path: reason`` line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from sim.files import atomic_write_text

from .errors import ConfigError, Issue
from .loader import NAME_PATTERN, NAME_RULE, read_yaml, reason_text
from .models import GatewayPool

CLI = "<command line>"
PLACEHOLDER_AZ = "TODO-az"
HCM = "envoy.filters.network.http_connection_manager"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
RETRY_ON = ("5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes")
LB_POLICIES = ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM")

Path_ = tuple  # an Envoy path: keys and list indices


def envoy_path(path: Path_) -> str:
    """``("static_resources", "clusters", 0, "type")`` -> ``static_resources.clusters[0].type``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "." in str(p) or not str(p):
            out += f'["{p}"]'
        else:
            out += ("." if out else "") + str(p)
    return out


@dataclass
class Ignored:
    """An Envoy field the import did not model."""

    file: str
    line: int | None
    path: Path_
    reason: str = "not modelled"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {envoy_path(self.path)}: {self.reason}"


@dataclass
class EnvoyImport:
    """The imported pool, what it came from and what was left out."""

    pool_name: str
    pool: GatewayPool
    data: dict  # the pool as YAML data (only the fields the Envoy config set)
    source: str
    cluster_name: str
    cluster_path: Path_
    route_path: Path_ | None
    ignored: list[Ignored] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    az_placeholder: bool = False
    instances_placeholder: bool = False

    def to_yaml(self) -> str:
        """The ``gateways:`` section of a topology, with a header comment."""
        return render(self)


# --------------------------------------------------------------------------- values


_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)s$")


class _Importer:
    def __init__(self, label: str, positions: dict[tuple, Any]):
        self.label = label
        self.positions = positions
        self.ignored: list[Ignored] = []
        self.notes: list[str] = []
        # fleetsim path (inside the pool) -> Envoy path or a command-line flag (str)
        self.prov: dict[tuple, Path_ | str] = {}
        self.vhosts: list[tuple[Path_, dict]] = []

    # ---- locating and failing

    def line(self, path: Path_) -> int | None:
        for n in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:n]))
            if pos is not None:
                return pos[1]
        return None

    def issue(self, path: Path_, reason: str) -> Issue:
        return Issue(self.label, self.line(path), envoy_path(path), reason)

    def fail(self, path: Path_, reason: str) -> NoReturn:
        raise ConfigError([self.issue(path, reason)])

    def ignore(self, path: Path_, value: Any, reason: str = "not modelled") -> None:
        # Descend through single-key mappings: the reported path names the setting.
        while isinstance(value, dict) and len(value) == 1 and reason == "not modelled":
            (key, value), = value.items()
            path = path + (key,)
        self.ignored.append(Ignored(self.label, self.line(path), path, reason))

    def rest(self, node: dict, path: Path_, handled: set[str]) -> None:
        for key, value in node.items():
            if key not in handled:
                self.ignore(path + (key,), value)

    # ---- typed reads

    def mapping(self, value: Any, path: Path_) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        return value

    def seq(self, value: Any, path: Path_) -> list:
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
        return value

    def string(self, value: Any, path: Path_) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_kind(value)}")
        return value

    def integer(self, value: Any, path: Path_) -> int:
        """A protobuf integer or integer wrapper: a number, or a string of digits (proto JSON)."""
        if isinstance(value, bool):
            self.fail(path, f"expected an integer, got {_kind(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        self.fail(path, f"expected an integer, got {_kind(value)}")

    def number(self, value: Any, path: Path_) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        self.fail(path, f"expected a number, got {_kind(value)}")

    def boolean(self, value: Any, path: Path_) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def duration(self, value: Any, path: Path_) -> float:
        """An Envoy duration in seconds: ``"0.25s"`` or ``{seconds: N, nanos: N}``."""
        return parse_duration(value, lambda reason: self.fail(path, reason))

    def percent(self, value: Any, path: Path_) -> float:
        """``envoy.type.v3.Percent``: ``{value: N}``."""
        if not isinstance(value, dict):
            self.fail(path, f"expected a Percent mapping {{value: N}}, got {_kind(value)}")
        node = value
        self.rest(node, path, {"value"})
        if "value" not in node:
            return 0.0  # proto3 default
        return self.number(node["value"], path + ("value",))

    def runtime_double(self, value: Any, path: Path_) -> float:
        """``RuntimeDouble``: ``{default_value: X, runtime_key: K}``; the runtime is not read."""
        node = self.mapping(value, path)
        self.rest(node, path, {"default_value"})
        return self.number(node.get("default_value", 0.0), path + ("default_value",))

    # ---- table-driven mapping

    def table(self, node: Any, path: Path_, table: dict[str, tuple[str, Callable] | None],
              fs_path: tuple) -> dict:
        """Map ``node`` by ``table`` (Envoy key -> (fleetsim key, converter), None: consumed)."""
        node = self.mapping(node, path)
        out: dict[str, Any] = {}
        self.prov[fs_path] = path
        for key, spec in table.items():
            if spec is not None:
                self.prov[fs_path + (spec[0],)] = path + (key,)
        for key, value in node.items():
            if key not in table:
                self.ignore(path + (key,), value)
                continue
            spec = table[key]
            if spec is None:
                continue
            fs_key, conv = spec
            got = conv(value, path + (key,))
            if got is not _SKIP:
                out[fs_key] = got
        return out


_SKIP = object()


def parse_duration(value: Any, fail: Callable[[str], NoReturn]) -> float:
    """Seconds from an Envoy (protobuf JSON) duration; ``fail(reason)`` on anything else."""
    if isinstance(value, str):
        text = value.strip()
        m = _DURATION.match(text)
        if m:
            return float(m.group(1))
        if text.startswith("-") and _DURATION.match(text[1:]):
            fail(f"negative duration {value!r}")
        if re.fullmatch(r"[\d.]+\s*(ms|us|ns|m|h|min)", text):
            fail(f"unparseable duration {value!r}: Envoy durations are seconds with an 's' suffix "
                 "(e.g. '0.1s' for 100 ms) or {seconds: N, nanos: N}")
        fail(f"unparseable duration {value!r}: expected seconds with an 's' suffix, e.g. '0.25s', "
             "or {seconds: N, nanos: N}")
    if isinstance(value, dict):
        unknown = [k for k in value if k not in ("seconds", "nanos")]
        if unknown:
            fail(f"unparseable duration: unknown key {unknown[0]!r} (expected seconds, nanos)")
        secs, nanos = value.get("seconds", 0), value.get("nanos", 0)
        if isinstance(secs, str) and re.fullmatch(r"-?\d+", secs.strip()):
            secs = int(secs)
        if isinstance(secs, bool) or not isinstance(secs, int):
            fail(f"unparseable duration: seconds must be a whole number, got {_kind(secs)}")
        if isinstance(nanos, bool) or not isinstance(nanos, int) or not 0 <= nanos <= 999_999_999:
            fail(f"unparseable duration: nanos must be a whole number in [0, 999999999], got {_kind(nanos)}")
        if secs < 0:
            fail(f"negative duration ({secs} s)")
        return secs + nanos / 1e9
    if isinstance(value, int | float) and not isinstance(value, bool):
        fail(f"unparseable duration {value!r}: Envoy durations are strings with an 's' suffix "
             f"(write '{value}s') or {{seconds: N, nanos: N}}")
    fail(f"unparseable duration: expected a string like '0.25s' or {{seconds: N, nanos: N}}, got {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) <= 40 else "a string"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    return type(value).__name__


# --------------------------------------------------------------------------- the import


class _Import(_Importer):
    # ---- route

    def retry_on(self, value: Any, path: Path_) -> Any:
        text = self.string(value, path)
        kept: list[str] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if part in RETRY_ON:
                if part not in kept:
                    kept.append(part)
            else:
                self.ignored.append(Ignored(self.label, self.line(path), path,
                                            f"retry condition {part!r} not modelled "
                                            f"(fleetsim knows {', '.join(RETRY_ON)})"))
        if not kept:
            return _SKIP
        return kept

    def host_predicates(self, value: Any, path: Path_) -> Any:
        out: list[str] = []
        for i, item in enumerate(self.seq(value, path)):
            ipath = path + (i,)
            node = self.mapping(item, ipath)
            name = str(node.get("name", ""))
            typ = str((node.get("typed_config") or {}).get("@type", "")) if isinstance(
                node.get("typed_config"), dict) else ""
            if name.endswith("previous_hosts") or typ.endswith("PreviousHostsPredicate"):
                out.append("previous_hosts")
                tc = node.get("typed_config")
                if isinstance(tc, dict):
                    self.rest(tc, ipath + ("typed_config",), {"@type"})
                self.rest(node, ipath, {"name", "typed_config"})
            else:
                self.ignore(ipath, item, f"retry host predicate {name or typ or '?'!r} not modelled")
        return out or _SKIP

    def status_codes(self, value: Any, path: Path_) -> list[int]:
        return [self.integer(v, path + (i,)) for i, v in enumerate(self.seq(value, path))]

    def retry_policy(self, value: Any, path: Path_, fs: tuple) -> Any:
        back_off = {"base_interval": ("base_interval_s", self.duration),
                    "max_interval": ("max_interval_s", self.duration)}
        table = {
            "retry_on": ("retry_on", self.retry_on),
            "num_retries": ("num_retries", self.integer),
            "per_try_timeout": ("per_try_timeout_s", self.optional_timeout),
            "retry_back_off": ("retry_back_off",
                               lambda v, p: self.table(v, p, back_off, fs + ("retry_back_off",))),
            "retry_host_predicate": ("retry_host_predicate", self.host_predicates),
            "host_selection_retry_max_attempts": ("host_selection_retry_max_attempts", self.integer),
            "retriable_status_codes": ("retriable_status_codes", self.status_codes),
        }
        out = self.table(value, path, table, fs)
        if "retry_on" not in out:
            if "retry_on" not in self.mapping(value, path):
                self.fail(path, "retry_policy has no retry_on: Envoy retries nothing without it")
            self.notes.append(f"{envoy_path(path)}: no retry condition fleetsim models; "
                              "the route is imported without retries")
            self.ignore(path, value, "no modelled retry condition: retry policy not imported")
            return _SKIP
        return out

    def optional_timeout(self, value: Any, path: Path_) -> Any:
        """A per-try timeout: 0 means none in Envoy."""
        secs = self.duration(value, path)
        return _SKIP if secs == 0 else secs

    def route_timeout(self, value: Any, path: Path_) -> Any:
        secs = self.duration(value, path)
        if secs == 0:
            self.fail(path, "0s disables Envoy's route timeout, which fleetsim cannot model; "
                            "set a positive timeout (Envoy's default is 15s)")
        return secs

    def route_action(self, node: Any, path: Path_, vhost: dict, vhost_path: Path_) -> dict:
        fs = ("route",)
        table = {
            "cluster": None,
            "weighted_clusters": None,
            "timeout": ("timeout_s", self.route_timeout),
            "retry_policy": ("retry_policy", lambda v, p: self.retry_policy(v, p, fs + ("retry_policy",))),
        }
        action = self.mapping(node, path)
        if "weighted_clusters" in action:
            self.ignore(path + ("weighted_clusters",), action["weighted_clusters"],
                        "not modelled (one cluster is imported)")
        out = self.table(action, path, table, fs)
        vrp = vhost.get("retry_policy")
        if vrp is not None:
            if "retry_policy" in action:
                self.ignore(vhost_path + ("retry_policy",), vrp, "overridden by the route's retry_policy")
            else:
                got = self.retry_policy(vrp, vhost_path + ("retry_policy",), fs + ("retry_policy",))
                if got is not _SKIP:
                    out["retry_policy"] = got
        return out

    # ---- cluster

    def lb_policy(self, value: Any, path: Path_) -> str:
        text = self.string(value, path)
        if text not in LB_POLICIES:
            self.fail(path, f"lb_policy {text} is not modelled (fleetsim has {', '.join(LB_POLICIES)})")
        return text

    def circuit_breakers(self, value: Any, path: Path_) -> Any:
        fs = ("cluster", "circuit_breakers")
        node = self.mapping(value, path)
        self.rest(node, path, {"thresholds"})
        if "thresholds" not in node:
            return _SKIP
        tpath = path + ("thresholds",)
        out: Any = _SKIP
        budget = {"budget_percent": ("budget_percent", self.percent),
                  "min_retry_concurrency": ("min_retry_concurrency", self.integer)}
        table = {
            "priority": None,
            "max_connections": ("max_connections", self.integer),
            "max_pending_requests": ("max_pending_requests", self.integer),
            "max_requests": ("max_requests", self.integer),
            "max_retries": ("max_retries", self.integer),
            "retry_budget": ("retry_budget",
                             lambda v, p: self.table(v, p, budget, fs + ("retry_budget",))),
        }
        for i, item in enumerate(self.seq(node["thresholds"], tpath)):
            ipath = tpath + (i,)
            th = self.mapping(item, ipath)
            prio = th.get("priority", "DEFAULT")
            if prio != "DEFAULT" or out is not _SKIP:
                why = "second DEFAULT thresholds" if prio == "DEFAULT" else f"priority {prio}"
                self.ignore(ipath, item, f"{why} not modelled (fleetsim has one priority, DEFAULT)")
                continue
            out = self.table(th, ipath, table, fs)
        return out

    def http2_options(self, value: Any, path: Path_, into: dict) -> None:
        node = self.mapping(value if value is not None else {}, path)
        into["http_protocol"] = "http2"
        self.prov[("cluster", "http_protocol")] = path
        self.prov[("cluster", "max_concurrent_streams")] = path + ("max_concurrent_streams",)
        for key, v in node.items():
            if key == "max_concurrent_streams":
                into["max_concurrent_streams"] = self.integer(v, path + (key,))
            else:
                self.ignore(path + (key,), v)

    def http1_options(self, value: Any, path: Path_, into: dict) -> None:
        into["http_protocol"] = "http1"
        self.prov[("cluster", "http_protocol")] = path
        if isinstance(value, dict):
            self.rest(value, path, set())

    def protocol_options(self, value: Any, path: Path_, into: dict) -> None:
        node = self.mapping(value, path)
        for key, opts in node.items():
            kpath = path + (key,)
            typ = opts.get("@type", "") if isinstance(opts, dict) else ""
            if key != HTTP_OPTIONS and not str(typ).endswith("upstreams.http.v3.HttpProtocolOptions"):
                self.ignore(kpath, opts)
                continue
            opts = self.mapping(opts, kpath)
            self.rest(opts, kpath, {"@type", "explicit_http_config"})
            if "explicit_http_config" not in opts:
                continue
            epath = kpath + ("explicit_http_config",)
            explicit = self.mapping(opts["explicit_http_config"], epath)
            for ekey, ev in explicit.items():
                if ekey == "http2_protocol_options":
                    self.http2_options(ev, epath + (ekey,), into)
                elif ekey == "http_protocol_options":
                    self.http1_options(ev, epath + (ekey,), into)
                else:
                    self.ignore(epath + (ekey,), ev, "not modelled (fleetsim speaks HTTP/1.1 or HTTP/2)")

    def retriable_statuses(self, value: Any, path: Path_) -> list[int]:
        codes: list[int] = []
        for i, item in enumerate(self.seq(value, path)):
            ipath = path + (i,)
            rng = self.mapping(item, ipath)
            self.rest(rng, ipath, {"start", "end"})
            start = self.integer(rng.get("start", 0), ipath + ("start",))
            end = self.integer(rng.get("end", 0), ipath + ("end",))
            if end <= start:
                self.fail(ipath, f"empty range [{start}, {end}) (end is exclusive)")
            codes.extend(c for c in range(start, end) if c not in codes)
        return codes

    def health_checks(self, value: Any, path: Path_) -> Any:
        items = self.seq(value, path)
        if not items:
            return _SKIP
        for i, extra in enumerate(items[1:], start=1):
            self.ignore(path + (i,), extra, "not modelled (only the first health check is imported)")
        fs = ("cluster", "health_check")
        d = self.duration
        http = {"retriable_statuses": ("retriable_statuses", self.retriable_statuses)}
        table: dict[str, tuple[str, Callable] | None] = {
            "timeout": ("timeout_s", d),
            "interval": ("interval_s", d),
            "initial_jitter": ("initial_jitter_s", d),
            "interval_jitter": ("interval_jitter_s", d),
            "interval_jitter_percent": ("interval_jitter_percent", self.integer),
            "unhealthy_threshold": ("unhealthy_threshold", self.integer),
            "healthy_threshold": ("healthy_threshold", self.integer),
            "unhealthy_interval": ("unhealthy_interval_s", d),
            "unhealthy_edge_interval": ("unhealthy_edge_interval_s", d),
            "healthy_edge_interval": ("healthy_edge_interval_s", d),
            "no_traffic_interval": ("no_traffic_interval_s", d),
            "no_traffic_healthy_interval": ("no_traffic_healthy_interval_s", d),
            "http_health_check": ("http_health_check",
                                  lambda v, p: self.table(v, p, http, fs + ("http_health_check",))),
        }
        hpath = path + (0,)
        node = self.mapping(items[0], hpath)
        for other in ("tcp_health_check", "grpc_health_check", "custom_health_check"):
            if other in node:
                self.ignore(hpath + (other,), node[other],
                            "not modelled (fleetsim probes as an HTTP check that passes on 200)")
        node = {k: v for k, v in node.items() if k not in ("tcp_health_check", "grpc_health_check",
                                                             "custom_health_check")}
        return self.table(node, hpath, table, fs)

    def cluster(self, node: dict, path: Path_) -> dict:
        fs = ("cluster",)
        out: dict[str, Any] = {}
        o = self.integer
        outlier: dict[str, tuple[str, Callable] | None] = {
            k: (k, o) for k in (
                "consecutive_5xx", "consecutive_gateway_failure", "max_ejection_percent",
                "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure",
                "enforcing_success_rate", "success_rate_minimum_hosts", "success_rate_request_volume",
                "success_rate_stdev_factor", "failure_percentage_threshold",
                "enforcing_failure_percentage", "failure_percentage_minimum_hosts",
                "failure_percentage_request_volume")}
        outlier.update({k: (k + "_s", self.duration) for k in (
            "interval", "base_ejection_time", "max_ejection_time", "max_ejection_time_jitter")})
        outlier.update({k: (k, self.boolean) for k in (
            "always_eject_one_host", "successful_active_health_check_uneject_host")})
        least = {"choice_count": ("choice_count", o),
                 "active_request_bias": ("active_request_bias", self.runtime_double)}
        common = {"healthy_panic_threshold": ("healthy_panic_threshold", self.percent),
                  "update_merge_window": ("update_merge_window_s", self.duration)}
        table: dict[str, tuple[str, Callable] | None] = {
            "name": None,
            "load_assignment": None,
            "connect_timeout": ("connect_timeout_s", self.duration),
            "lb_policy": ("lb_policy", self.lb_policy),
            "least_request_lb_config": ("least_request_lb_config",
                                        lambda v, p: self.table(v, p, least, fs + ("least_request_lb_config",))),
            "circuit_breakers": ("circuit_breakers", self.circuit_breakers),
            "outlier_detection": ("outlier_detection",
                                  lambda v, p: self.table(v, p, outlier, fs + ("outlier_detection",))),
            "health_checks": ("health_check", self.health_checks),
            "common_lb_config": ("common_lb_config",
                                 lambda v, p: self.table(v, p, common, fs + ("common_lb_config",))),
        }
        for key in ("http2_protocol_options", "http_protocol_options", "typed_extension_protocol_options"):
            table[key] = None
        out = self.table(node, path, table, fs)
        if "load_assignment" in node:
            self.ignore(path + ("load_assignment",), node["load_assignment"],
                        "not modelled (the hosts are the topology's services)")
        # Protocol: the deprecated cluster fields first, the typed options override them.
        if "http_protocol_options" in node:
            self.http1_options(node["http_protocol_options"], path + ("http_protocol_options",), out)
        if "http2_protocol_options" in node:
            self.http2_options(node["http2_protocol_options"], path + ("http2_protocol_options",), out)
        if "typed_extension_protocol_options" in node:
            self.protocol_options(node["typed_extension_protocol_options"],
                                  path + ("typed_extension_protocol_options",), out)
        if out.get("http_protocol") != "http2":
            out.pop("max_concurrent_streams", None)
        return out

    def model_issue(self, err: dict) -> Issue:
        """A pydantic error on the built pool, located at the Envoy field (or flag) it came from."""
        loc = tuple(err["loc"])
        fs_path = ".".join(str(p) for p in loc)
        for n in range(len(loc), -1, -1):
            src = self.prov.get(loc[:n])
            if isinstance(src, str):
                return Issue(CLI, None, src, reason_text(err))
            if src is not None:
                return self.issue(src, f"{reason_text(err)} (fleetsim gateway field {fs_path})")
        return Issue(self.label, None, "", f"{fs_path}: {reason_text(err)}")  # pragma: no cover

    # ---- listeners and the default route

    def routes(self, static: dict, sp: Path_) -> list[dict]:
        """Every route of every inline route_config, in file order, with what selection needs."""
        found: list[dict] = []
        if "listeners" not in static:
            return found
        lpath = sp + ("listeners",)
        for li, listener in enumerate(self.seq(static["listeners"], lpath)):
            lp = lpath + (li,)
            listener = self.mapping(listener, lp)
            self.rest(listener, lp, {"name", "filter_chains"})
            chains = listener.get("filter_chains") or []
            for ci, chain in enumerate(self.seq(chains, lp + ("filter_chains",))):
                cp = lp + ("filter_chains", ci)
                chain = self.mapping(chain, cp)
                self.rest(chain, cp, {"filters"})
                for fi, filt in enumerate(self.seq(chain.get("filters") or [], cp + ("filters",))):
                    fp = cp + ("filters", fi)
                    filt = self.mapping(filt, fp)
                    tc = filt.get("typed_config")
                    typ = tc.get("@type", "") if isinstance(tc, dict) else ""
                    if filt.get("name") != HCM and not str(typ).endswith(".HttpConnectionManager"):
                        self.ignore(fp, filt, f"network filter {filt.get('name', '?')!r} not modelled")
                        continue
                    self.rest(filt, fp, {"name", "typed_config"})
                    if tc is None:
                        self.fail(fp, "http_connection_manager has no typed_config")
                    found += self.hcm(self.mapping(tc, fp + ("typed_config",)), fp + ("typed_config",))
        return found

    def hcm(self, tc: dict, path: Path_) -> list[dict]:
        self.rest(tc, path, {"@type", "route_config", "rds"})
        if "rds" in tc:
            self.ignore(path + ("rds",), tc["rds"], "not modelled (routes from RDS are not read)")
        if "route_config" not in tc:
            return []
        rp = path + ("route_config",)
        rc = self.mapping(tc["route_config"], rp)
        self.rest(rc, rp, {"name", "virtual_hosts"})
        out = []
        vp0 = rp + ("virtual_hosts",)
        for vi, vhost in enumerate(self.seq(rc.get("virtual_hosts") or [], vp0)):
            vp = vp0 + (vi,)
            vhost = self.mapping(vhost, vp)
            self.vhosts.append((vp, vhost))
            domains = vhost.get("domains") or []
            wildcard = isinstance(domains, list) and "*" in domains
            rpath = vp + ("routes",)
            for ri, route in enumerate(self.seq(vhost.get("routes") or [], rpath)):
                route = self.mapping(route, rpath + (ri,))
                action = route.get("route")
                match = route.get("match") if isinstance(route.get("match"), dict) else {}
                regex = match.get("safe_regex")
                catch_all = (match.get("prefix") in ("/", "")
                             or match.get("path_separated_prefix") == "/"
                             or (isinstance(regex, dict) and regex.get("regex") in (".*", "/.*")))
                catch_all = catch_all and not match.get("headers") and not match.get("query_parameters")
                clusters: list[str] = []
                if isinstance(action, dict):
                    if isinstance(action.get("cluster"), str):
                        clusters = [action["cluster"]]
                    wc = action.get("weighted_clusters")
                    if isinstance(wc, dict) and isinstance(wc.get("clusters"), list):
                        clusters += [c.get("name") for c in wc["clusters"] if isinstance(c, dict)]
                out.append(dict(path=rpath + (ri,), node=route, vhost=vhost, vhost_path=vp,
                                wildcard=wildcard, catch_all=catch_all, clusters=clusters,
                                direct=isinstance(action.get("cluster"), str) if isinstance(action, dict)
                                else False))
        return out

    def walk_routes(self, found: list[dict], chosen: dict | None) -> None:
        """Record the unmodelled parts of every virtual host and route but the chosen one's."""
        for vp, vhost in self.vhosts:
            handled = {"name", "domains", "routes"}
            if chosen is not None and chosen["vhost_path"] == vp:
                handled.add("retry_policy")  # the chosen route's handler reads it
            self.rest(vhost, vp, handled)
        for r in found:
            if r is not chosen:
                self.ignore(r["path"], r["node"], "not modelled (only the default route is imported)")

    def pick(self, found: list[dict], clusters: dict[str, Path_], want: str | None) -> tuple[dict | None, str]:
        if want is not None:
            if want not in clusters:
                raise ConfigError([Issue(CLI, None, "--cluster", f"no cluster {want!r} in static_resources"
                                                                 f" (clusters: {', '.join(clusters)})")])
            for r in sorted(found, key=lambda r: not r["wildcard"]):
                if want in r["clusters"]:
                    return r, want
            self.notes.append(f"no route points at cluster {want!r}: route settings left at defaults")
            return None, want
        ordered = sorted(found, key=lambda r: (not r["wildcard"], not r["catch_all"]))
        for r in ordered:
            if r["direct"]:
                name = r["clusters"][0]
                if name not in clusters:
                    self.fail(r["path"] + ("route", "cluster"),
                              f"cluster {name!r} is not in static_resources.clusters "
                              f"(clusters: {', '.join(clusters) or 'none'})")
                return r, name
        for r in ordered:
            if r["clusters"]:
                self.fail(r["path"] + ("route",), "the default route has no single cluster "
                          "(weighted_clusters): pick one with --cluster NAME")
        if len(clusters) == 1:
            return None, next(iter(clusters))
        raise ConfigError([Issue(self.label, self.line(("static_resources", "clusters")),
                                 "static_resources.clusters",
                                 f"{len(clusters)} clusters and no route that points at one: "
                                 f"pick one with --cluster NAME ({', '.join(clusters)})")])


def import_envoy(path: str | Path, *, pool: str = "gw", az: str | None = None,
                 instances: int | None = None, cluster: str | None = None) -> EnvoyImport:
    """Read an Envoy v3 bootstrap and build the gateway pool it describes.

    Raises:
        ConfigError: one located issue (file, not YAML, not a bootstrap, bad value).
    """
    label = str(path)
    if not re.fullmatch(NAME_PATTERN, pool):
        raise ConfigError([Issue(CLI, None, "--pool", f"invalid name {pool!r}: {NAME_RULE}")])
    doc = read_yaml(Path(path), label)
    imp = _Import(label, doc.positions)
    data = doc.data
    if "static_resources" not in data:
        hint = ""
        if "clusters" in data or "listeners" in data:
            hint = ": a top-level 'clusters'/'listeners' belongs under static_resources"
        elif "dynamic_resources" in data:
            hint = ": only dynamic_resources (xDS), which fleetsim cannot read"
        raise ConfigError([Issue(label, 1, "static_resources",
                                 f"not an Envoy v3 bootstrap: no static_resources{hint}")])
    for key, value in data.items():
        if key != "static_resources":
            imp.ignore((key,), value)
    sp: Path_ = ("static_resources",)
    static = imp.mapping(data["static_resources"], sp)
    imp.rest(static, sp, {"listeners", "clusters"})
    cpath = sp + ("clusters",)
    if static.get("clusters") is not None:
        imp.seq(static["clusters"], cpath)
    if not static.get("clusters"):
        imp.fail(cpath if "clusters" in static else sp,
                 "no clusters: fleetsim imports a static cluster (CDS is not read)")
    by_name: dict[str, Path_] = {}
    nodes: dict[str, dict] = {}
    for i, c in enumerate(imp.seq(static["clusters"], cpath)):
        c = imp.mapping(c, cpath + (i,))
        name = c.get("name")
        if not isinstance(name, str) or not name:
            imp.fail(cpath + (i,), "cluster has no name")
        if name in by_name:
            imp.fail(cpath + (i, "name"), f"duplicate cluster name {name!r}")
        by_name[name] = cpath + (i,)
        nodes[name] = c

    found = imp.routes(static, sp)
    chosen, cname = imp.pick(found, by_name, cluster)
    imp.walk_routes(found, chosen)

    gw: dict[str, Any] = {}
    imp.prov[("az",)] = "--az"
    imp.prov[("instances",)] = "--instances"
    gw["az"] = az if az is not None else PLACEHOLDER_AZ
    gw["instances"] = instances if instances is not None else 1
    if chosen is not None:
        rnode = chosen["node"]
        imp.rest(rnode, chosen["path"], {"match", "name", "route"})
        route = imp.route_action(rnode["route"], chosen["path"] + ("route",), chosen["vhost"],
                                 chosen["vhost_path"])
        if route:
            gw["route"] = route
    for name, p in by_name.items():
        if name != cname:
            imp.ignore(p, nodes[name], f"cluster {name!r} not imported (import it with --cluster {name})")
    cl = imp.cluster(nodes[cname], by_name[cname])
    if cl:
        gw["cluster"] = cl

    try:
        model = GatewayPool.model_validate(gw)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise ConfigError([imp.model_issue(err)]) from None
    imp.ignored.sort(key=lambda x: (x.line or 0))
    return EnvoyImport(pool_name=pool, pool=model, data=gw, source=label, cluster_name=cname,
                       cluster_path=by_name[cname], route_path=chosen["path"] if chosen else None,
                       ignored=imp.ignored, notes=imp.notes, az_placeholder=az is None,
                       instances_placeholder=instances is None)




# --------------------------------------------------------------------------- output


def render(result: EnvoyImport) -> str:
    """The ``gateways:`` section (YAML) with a header naming its source."""
    pool = CommentedMap()
    for key, value in result.data.items():
        pool[key] = value
    if result.az_placeholder:
        pool.yaml_add_eol_comment("TODO: an AZ of your topology (fleetsim check rejects this placeholder)",
                                  "az")
    if result.instances_placeholder:
        pool.yaml_add_eol_comment("TODO: gateway instances in this AZ", "instances")
    top = CommentedMap()
    top["gateways"] = CommentedMap([(result.pool_name, pool)])
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(top, buf)
    route = envoy_path(result.route_path) if result.route_path else "none (route defaults)"
    head = [
        f"# Imported by `fleetsim import-envoy` from {result.source}",
        f"#   cluster {result.cluster_name!r} ({envoy_path(result.cluster_path)})",
        f"#   route   {route}",
        f"# {len(result.ignored)} Envoy field(s) are not modelled (listed on stderr when imported).",
        "# Add this pool to a topology's gateways; workers and cpu_time_s keep fleetsim's defaults.",
    ]
    return "\n".join(head) + "\n" + buf.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write ``fleetsim import-envoy --out``: ``text`` to ``path`` atomically.

    The folder must exist: a mistyped ``--out`` is reported rather than
    creating folders.

    Args:
        path: The output file the user named.
        text: The YAML to write.

    Raises:
        OSError: The folder is missing or the file cannot be written.
    """
    atomic_write_text(path, text, make_parents=False)
