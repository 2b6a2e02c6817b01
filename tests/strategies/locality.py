"""Zone-aware routing, locality-weighted balancing and priorities of a gateway pool's cluster.

Extensions of each pool: ``cluster.common_lb_config.zone_aware_lb_config``
(small ``min_cluster_size`` values so that it applies in small drawn fleets,
sometimes its own pool's local cluster, sometimes every pool),
``cluster.common_lb_config.locality_weighted_lb_config`` (null when the pool
already drew zone-aware routing: Envoy's oneof), ``cluster.priorities`` and
``cluster.overprovisioning_factor``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from .gateway import fields
from .registry import Options, Plan, extension


@extension("pool", "cluster.common_lb_config.zone_aware_lb_config", nullable=True, order=1)
@st.composite
def _zone_aware(draw, plan: Plan, place: str, node: dict, opts: Options):
    out = draw(fields({"routing_enabled": st.sampled_from([0.0, 50.0, 100.0]),
                       "min_cluster_size": st.sampled_from([0, 1, 2, 6])}))
    if draw(st.booleans()):
        pools = sorted(plan.pools)
        out["local_cluster"] = draw(st.lists(st.sampled_from(pools), min_size=1, max_size=len(pools), unique=True))
    return out


@extension("pool", "cluster.common_lb_config.locality_weighted_lb_config", nullable=True, order=2)
@st.composite
def _locality_weighted(draw, plan: Plan, place: str, node: dict, opts: Options):
    if node.get("cluster", {}).get("common_lb_config", {}).get("zone_aware_lb_config") is not None:
        return None  # one of the two at most, as Envoy's oneof
    azs = sorted(plan.az_region)
    weights = draw(st.dictionaries(st.sampled_from(azs), st.integers(min_value=1, max_value=5), max_size=len(azs)))
    return {"locality_weights": weights}


@extension("pool", "cluster.priorities")
def _priorities(plan: Plan, place: str, node: dict, opts: Options):
    return st.dictionaries(st.sampled_from(sorted(plan.az_region)), st.integers(min_value=0, max_value=2))


@extension("pool", "cluster.overprovisioning_factor")
def _overprovisioning(plan: Plan, place: str, node: dict, opts: Options):
    return st.sampled_from([100, 140, 200])
