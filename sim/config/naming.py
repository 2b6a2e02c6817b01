"""Instance names: the one place that spells how gateway and backend instances are named.

An instance's name is its identity for the whole run: its random streams are
keyed by it (``SimContext.rng(f"{name}...")``), and so are graph nodes,
counters, ``instance_overrides`` and fault targets. The rule therefore has to
stay stable: renaming instances would change every stream they draw from and
with it every result of every seed.
"""

from __future__ import annotations


def backend_name(service: str, az: str, i: int | str) -> str:
    """The name of the ``i``-th instance of ``service`` in ``az``: ``<service>-<az>-<i>``.

    Indices count from 0 within each AZ, in the order of
    ``instances_per_az``. The name is stable (it depends on the
    configuration only), so the instance's random streams, which are keyed
    by it, draw the same numbers on every run of a seed.

    Args:
        service: the service's name (its key in ``topology.services``).
        az: the availability zone (a key of the service's ``instances_per_az``).
        i: the instance's index within that AZ, from 0 (or a placeholder such
            as ``"<i>"`` when a message describes every instance).

    Returns:
        The instance name, e.g. ``api-use1-az1-0``.
    """
    return f"{service}-{az}-{i}"


def gateway_name(pool: str, i: int | str) -> str:
    """The name of the ``i``-th instance of gateway pool ``pool``: ``<pool>-<i>``.

    A pool lives in one AZ, so the AZ is not part of the name. The name is
    stable (it depends on the configuration only), so the instance's random
    streams, which are keyed by it, draw the same numbers on every run of a
    seed.

    Args:
        pool: the pool's name (its key in ``topology.gateways``).
        i: the instance's index within the pool, from 0 (or a placeholder such
            as ``"<i>"`` when a message describes every instance).

    Returns:
        The instance name, e.g. ``gw-az1-0``.
    """
    return f"{pool}-{i}"


# The rules as messages and docs show them, made by the functions so they cannot disagree.
BACKEND_RULE = backend_name("<service>", "<az>", "<i>")
GATEWAY_RULE = gateway_name("<pool>", "<i>")
