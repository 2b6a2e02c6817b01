"""The registry the whole-schema generator iterates, and what every strategy is given.

Every optional part of an experiment (a route's retry policy, a cluster's
health check, a service's timer error, the client's token bucket, the fault
timeline, variants, ...) is an :class:`Extension`: where it goes (``scope``:
the experiment, the topology, each gateway pool, each service, the
workload; ``path``: the field inside that scope's mapping), a function that
returns a strategy for its value at one place, whether the schema requires
it and whether it may be null. :func:`tests.strategies.experiment.experiments` builds the
skeleton of a fleet (a :class:`Plan`: regions, AZs, clients, pools,
services, run length), then walks :data:`EXTENSIONS` in order and, for each
extension and each place of its scope, draws whether to set it and its
value. Variants and overrides pick their paths from the same registry.

A new subsystem adds its strategy module beside the others in
``tests/strategies/`` and registers its extensions with :func:`extension`;
the package imports every module in it, so the generator, the variants and
the schema-coverage test (``tests/test_properties.py``) pick it up without
another edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from hypothesis.strategies import SearchStrategy

from sim.config.naming import backend_name, gateway_name

#: Where an extension's value goes: the experiment mapping, its topology, each
#: gateway pool, each service, the workload.
SCOPES = ("experiment", "topology", "pool", "service", "workload")

#: Distribution kinds :func:`tests.strategies.distributions.distributions` draws
#: (``number`` is the YAML shorthand for a constant).
ALL_DISTRIBUTIONS = frozenset({"number", "constant", "exponential", "lognormal", "gamma", "uniform", "empirical"})

#: How a fault timeline may sit in the run (see :mod:`tests.strategies.faults`).
FAULT_MODES = ("none", "to_end", "judged", "refused")


@dataclass(frozen=True)
class Options:
    """What a generator may draw; the defaults draw the whole schema.

    Attributes:
        dists: distribution kinds allowed (:data:`ALL_DISTRIBUTIONS`).
        arrivals: workload arrival processes allowed.
        exact_time: only settings whose effect scales exactly when every
            duration is multiplied by a power of two (no whole-millisecond
            jitter, gateway retry back-off or update merge window; see
            ``tests/test_metamorphic.py``).
        require: extension features always set (``<scope>.<dotted path>``; a
            prefix ending in ``.`` requires every feature under it).
        exclude: extension features never set (same form).
        fault_modes: how a fault timeline may sit in the run (:data:`FAULT_MODES`).
        fault_kinds: fault kinds allowed.
        variants: draw variants (each one more run).
        durations: run lengths (s) to draw from, before faults ask for more.
        warmups: warm-up lengths (s) to draw from.
        max_rate: the highest offered rate (calls/s) a schedule step may ask.
        one_target_per_node: each balancer node forwards to one gateway
            instance (its random picks are then trivial).
        direct: how often clients go straight to gateway pools: ``never``,
            ``maybe`` or ``always``.
        error_probabilities: values a service's ``error_probability`` and an
            error burst's take.
    """

    dists: frozenset[str] = ALL_DISTRIBUTIONS
    arrivals: tuple[str, ...] = ("poisson", "deterministic")
    exact_time: bool = False
    require: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    fault_modes: tuple[str, ...] = FAULT_MODES
    fault_kinds: tuple[str, ...] = ("backend_slowdown", "error_burst", "instance_crash", "az_outage", "load_spike",
                                    "rolling_restart")
    variants: bool = True
    durations: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0, 5.0)
    warmups: tuple[float, ...] = (0.0, 0.0, 0.0, 0.5, 1.0)
    max_rate: float = 40.0
    one_target_per_node: bool = False
    direct: str = "maybe"
    error_probabilities: tuple[float, ...] = (0.0, 0.0, 0.05, 0.3, 1.0)

    def _matches(self, names: frozenset[str], feature: str) -> bool:
        return any(feature == n or (n.endswith(".") and feature.startswith(n)) for n in names)

    def required(self, feature: str) -> bool:
        """Whether ``feature`` is always set."""
        return self._matches(self.require, feature)

    def excluded(self, feature: str) -> bool:
        """Whether ``feature`` is never set."""
        return self._matches(self.exclude, feature)


#: The whole schema, as drawn by default.
WHOLE_SCHEMA = Options()


@dataclass(frozen=True)
class Plan:
    """The skeleton of a drawn fleet, which every extension may read.

    Attributes:
        regions: region -> its AZs (every AZ name unique fleet-wide).
        clients: the regions with clients, in topology order.
        direct: region -> the gateway pools its clients call straight (no balancer).
        pools: pool -> (AZ, instances), in topology order.
        services: service -> instances per AZ, in topology order.
        duration_s, warmup_s: the run's length and warm-up.
    """

    regions: dict[str, tuple[str, ...]]
    clients: tuple[str, ...]
    direct: dict[str, tuple[str, ...]]
    pools: dict[str, tuple[str, int]]
    services: dict[str, dict[str, int]]
    duration_s: float
    warmup_s: float

    @cached_property
    def az_region(self) -> dict[str, str]:
        """Every AZ's region."""
        return {az: r for r, azs in self.regions.items() for az in azs}

    @cached_property
    def backends(self) -> list[tuple[str, str, str]]:
        """(name, service, AZ) of every backend instance, in build order."""
        return [(backend_name(svc, az, i), svc, az) for svc, per_az in self.services.items()
                for az in sorted(per_az) for i in range(per_az[az])]

    @cached_property
    def gateways(self) -> list[tuple[str, str]]:
        """(name, AZ) of every gateway instance."""
        return [(gateway_name(pool, i), az) for pool, (az, n) in self.pools.items() for i in range(n)]

    @cached_property
    def azs_with_parts(self) -> list[str]:
        """AZs that hold a gateway or a backend instance, sorted."""
        return sorted({az for _, _, az in self.backends} | {az for _, az in self.gateways})


#: A strategy factory: ``(plan, place, node, options) -> strategy of the value``, where
#: ``place`` is the pool or service name (None for the other scopes) and ``node`` the
#: mapping drawn so far at that scope (read it for fields that must agree).
Draw = Callable[[Plan, "str | None", dict, Options], SearchStrategy]


@dataclass(frozen=True)
class Extension:
    """One optional part of the schema and how to draw it.

    Attributes:
        scope: one of :data:`SCOPES`.
        path: the field's path inside the scope's mapping, e.g. ``("cluster", "health_check")``.
        draw: the strategy factory (:data:`Draw`).
        required: always set (a bool, or a function of the :class:`Plan`), as
            a field the schema requires is.
        nullable: the field may be set to null (a variant may switch it off).
        order: extensions are drawn by ascending order, then registration.
        exact_time: its values keep the time-scaling relation exact when
            drawn with ``Options(exact_time=True)``; False: never drawn then.
    """

    scope: str
    path: tuple[str, ...]
    draw: Draw
    required: bool | Callable[[Plan], bool] = False
    nullable: bool = False
    order: int = 0
    exact_time: bool = True

    def is_required(self, plan: Plan, opts: Options) -> bool:
        """Whether this extension is set at every place of its scope in ``plan``."""
        if opts.required(self.feature):
            return True
        return self.required(plan) if callable(self.required) else self.required

    def allowed(self, opts: Options) -> bool:
        """Whether ``opts`` lets this extension be drawn at all."""
        return not opts.excluded(self.feature) and (self.exact_time or not opts.exact_time)

    @property
    def feature(self) -> str:
        """``<scope>.<dotted path>``, as :class:`Options` names it."""
        return ".".join((self.scope, *self.path))


EXTENSIONS: list[Extension] = []


def extension(scope: str, path: str, *, required: bool | Callable[[Plan], bool] = False, nullable: bool = False,
              order: int = 0, exact_time: bool = True):
    """Register the decorated strategy factory as the extension at ``scope`` / ``path`` (dotted)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def register(fn: Draw) -> Draw:
        ext = Extension(scope, tuple(path.split(".")), fn, required, nullable, order, exact_time)
        if any(e.feature == ext.feature for e in EXTENSIONS):
            raise ValueError(f"extension {ext.feature} registered twice")
        EXTENSIONS.append(ext)
        return fn

    return register


def extensions(scope: str | None = None) -> list[Extension]:
    """The registered extensions (of ``scope``), in drawing order."""
    found = [e for e in EXTENSIONS if scope is None or e.scope == scope]
    return sorted(found, key=lambda e: e.order)  # stable: registration order within an order


def set_path(node: dict, path: tuple[str, ...], value) -> None:
    """Set ``node[path[0]][path[1]]... = value``, making the mappings on the way."""
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def get_path(node: dict, path: tuple[str, ...], default=None):
    """``node[path[0]][path[1]]...``, or ``default`` where the path is missing."""
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node
