"""The GSLB (sim/components/gslb.py): detection by health checks, failover through resolver TTLs.

Failover time is detection plus what is left of each resolver's TTL. The
detection time is checked against its closed form (an order statistic of
the checkers' phases plus the threshold's intervals and the probe timeout),
and the share of resolvers that have moved at a time after detection
against the TTL's uniform residual, within 99% confidence intervals.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sim.components.gslb import Gslb, GslbEntry, failover_times
from sim.config.models import Gslb as GslbConfig
from sim.engine import SimContext
from tests.stats import assert_matches


def _region():
    gw = SimpleNamespace(up=True)
    return [SimpleNamespace(up=True, targets=[gw])], gw


def _world(seed: int, duration: float, **cfg):
    ctx = SimContext(seed, 0, duration_s=duration)
    east, east_gw = _region()
    west, _ = _region()
    config = GslbConfig.model_validate({"policy": "geo", **cfg})
    gslb = Gslb(ctx, config, {"east": east, "west": west})
    return ctx, gslb, east_gw


def _detection(seed: int, fail_at: float, **cfg) -> float:
    ctx, gslb, gw = _world(seed, fail_at + 400, **cfg)
    gslb.start()
    ctx.call_later(fail_at, lambda _: setattr(gw, "up", False))
    ctx.run(fail_at + 400)
    down = [t for t, r, ok in gslb.changes if r == "east" and not ok]
    assert gslb.truth and gslb.truth[0][1:] == ("east", False)
    return down[0] - fail_at


@pytest.mark.parametrize(("checkers", "interval", "threshold"), [(8, 30.0, 3), (8, 10.0, 3), (3, 30.0, 1)])
def test_detection_time_matches_the_order_statistic(checkers, interval, threshold):
    # The region is unhealthy once healthy checkers / checkers <= 0.18: the m-th checker to fail,
    # m = checkers - floor(0.18 x checkers). Each fails (threshold - 1) intervals after its first
    # failing probe, which comes a uniform V in [0, interval) after the failure, and is known
    # timeout_s later. E[m-th smallest of n uniforms] = m / (n + 1).
    hc = {"checkers": checkers, "interval_s": interval, "failure_threshold": threshold, "timeout_s": 4.0}
    m = checkers - int(0.18 * checkers)
    expected = m / (checkers + 1) * interval + (threshold - 1) * interval + 4.0
    values = [_detection(seed, 100.0 + seed * 0.37, health_check=hc) for seed in range(120)]
    assert min(values) >= (threshold - 1) * interval + 4.0 - 1e-9
    assert max(values) <= threshold * interval + 4.0 + 1e-9
    assert_matches(values, expected, 0, "detection time (s)", abs_width=0.06 * interval)


def _moved_shares(seed: int, ttl: float, afters: list[float], **cfg) -> list[float]:
    """Share of resolvers of 'east' that answer 'west' at each of ``afters`` s past detection."""
    ctx, gslb, gw = _world(seed, 2000.0, ttl_s=ttl, resolvers=1000, **cfg)
    entry = GslbEntry(ctx, "dns.east", "east", gslb)
    gslb.start()
    ctx.call_later(100.0, lambda _: setattr(gw, "up", False))
    # Every resolver is asked every 0.25 s (busy resolvers), so each moves at its first expiry
    # after detection, to within 0.25 s.
    step = 0.25

    def ask(_=None):
        for i in range(len(entry.cached)):
            if ctx.now >= entry.expires[i]:
                entry.cached[i] = gslb.answer("east", entry.uniform)
                entry.expires[i] = ctx.now + entry.ttl[i]
        ctx.call_later(step, ask)

    ctx.call_later(0.0, ask)
    t = 100.0
    while not gslb.changes:
        t += 1.0
        ctx.run(t)
    detected = next(t for t, r, ok in gslb.changes if r == "east" and not ok)
    out = []
    for after in afters:
        ctx.run(detected + after + 1e-9)
        out.append(sum(1 for r in entry.cached if r == "west") / len(entry.cached))
    return out


@pytest.mark.parametrize("ttl", [30.0, 60.0, 300.0])
def test_failover_follows_detection_plus_remaining_ttl(ttl):
    # After detection each resolver moves when its answer expires: a uniform residual of the TTL.
    fracs = (0.25, 0.5, 0.9)
    runs = [_moved_shares(seed, ttl, [f * ttl for f in fracs]) for seed in range(10)]
    for k, frac in enumerate(fracs):
        assert_matches([r[k] for r in runs], frac, 0, f"moved share {frac:.0%} of TTL {ttl:g} s after detection",
                       abs_width=0.035)


def test_ttl_extending_resolvers_hold_the_rest():
    # 10% of resolvers keep answers 600 s: at detection + TTL the others have all moved, and of the
    # extenders the share TTL / 600 has.
    ttl, ext, f = 60.0, 600.0, 0.10
    values = [_moved_shares(seed, ttl, [ttl + 0.5], ttl_extending_fraction=f, extended_ttl_s=ext)[0]
              for seed in range(6)]
    assert_matches(values, (1 - f) + f * (ttl + 0.5) / ext, 0, "moved share with extenders", abs_width=0.02)


def test_policies():
    ctx, gslb, gw = _world(1, 10.0, latency_s={"east": {"west": 0.03}})
    u = lambda: 0.5  # noqa: E731
    assert gslb.answer("east", u) == "east"
    gslb.healthy["east"] = False
    assert gslb.answer("east", u) == "west"  # geo: nearest healthy
    gslb.healthy["west"] = False
    assert gslb.answer("east", u) == "east"  # none healthy: all count
    ctx, gslb, _ = _world(1, 10.0)
    gslb.config = GslbConfig.model_validate({"policy": "failover", "primary": "west", "secondary": "east"})
    assert gslb.answer("east", u) == "west"
    gslb.healthy["west"] = False
    assert gslb.answer("east", u) == "east"
    gslb.config = GslbConfig.model_validate({"policy": "weighted", "weights": {"east": 1, "west": 3}})
    gslb.healthy["west"] = True
    assert gslb.answer("east", lambda: 0.2) == "east" and gslb.answer("east", lambda: 0.3) == "west"
    gslb.config = GslbConfig.model_validate({"policy": "latency", "latency_s": {"east": {"east": 0.02, "west": 0.01}}})
    assert gslb.answer("east", u) == "west"
    with pytest.raises(ValueError, match="primary and secondary"):
        GslbConfig.model_validate({"policy": "failover"})
    with pytest.raises(ValueError, match="extended_ttl_s is required"):
        GslbConfig.model_validate({"policy": "geo", "ttl_extending_fraction": 0.1})


def test_failover_times_reads_the_series():
    # A linear decline from 10/s to 0 over 10 s after the failure at 20 s: the 10-s window mean
    # first falls to 0.5/s (5% of 10) over [25, 35), whose middle is 30.
    decline = [10 - k for k in range(11)]
    series = {"east": [10] * 20 + decline + [0] * 20, "west": [10] * 51}
    rows = failover_times([(20.0, "east", False)], series)
    mean = [sum(series["east"][s:s + 10]) / 10 for s in range(21, 40)]
    first = next(s for s, m in zip(range(21, 40), mean, strict=True) if m <= 0.5)
    assert rows == [{"region": "east", "failed_at_s": 20.0, "moved_at_s": first + 5.0,
                     "time_to_move_s": first + 5.0 - 20.0}]
    # One quiet second in a noisy series is not a move.
    noisy = {"east": [10] * 20 + [9, 0, 9, 8, 9, 10, 9, 8, 9, 9] * 3}
    assert failover_times([(20.0, "east", False)], noisy)[0]["moved_at_s"] is None
