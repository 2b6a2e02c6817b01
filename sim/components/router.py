"""Envoy router rules: which failures are retried, back-off, retry limits.

Pure functions and small state objects so each rule can be tested on its
own (docs/root/configuration/http/http_filters/router_filter.rst;
source/common/common/backoff_strategy.cc; api/envoy/config/cluster/v3/
circuit_breaker.proto).
"""

from __future__ import annotations

from sim.config.models import CircuitBreakers, RetryPolicy

from .request import (
    CONNECT_FAILURE,
    OK,
    OVERFLOW_MAX_REQUESTS,
    OVERFLOW_PENDING,
    PER_TRY_TIMEOUT,
    ROUTE_TIMEOUT,
    STATUS,
    UPSTREAM_RESET,
)

# Failures with no response from the upstream (Envoy: disconnect, reset, read timeout).
_NO_RESPONSE = {UPSTREAM_RESET, CONNECT_FAILURE, PER_TRY_TIMEOUT}


def retry_classes(outcome: str) -> frozenset[str]:
    """The ``retry_on`` classes that cover ``outcome`` (empty: never retried).

    ``5xx``: any 5xx from the upstream or no response (reset, connect
    failure, per-try timeout). ``gateway-error``: 502/503/504 from the
    upstream or no response. ``reset``: no response (disconnect, reset, read
    timeout). ``connect-failure``: a failed connect. Local overflow replies
    and the route timeout are never retried.
    """
    if outcome in (OK, OVERFLOW_MAX_REQUESTS, OVERFLOW_PENDING, ROUTE_TIMEOUT):
        return frozenset()
    classes = {"5xx"}
    if outcome in _NO_RESPONSE or STATUS[outcome] in (502, 503, 504):
        classes.add("gateway-error")
    if outcome in _NO_RESPONSE:
        classes.add("reset")
    if outcome == CONNECT_FAILURE:
        classes.add("connect-failure")
    return frozenset(classes)


class RetryRules:
    """A route's retry policy, pre-digested for the hot path."""

    __slots__ = ("num_retries", "retry_on", "codes", "base_ms", "max_ms", "previous_hosts",
                 "host_selection_max_attempts", "per_try_timeout_s")

    def __init__(self, policy: RetryPolicy):
        self.num_retries = policy.num_retries
        self.retry_on = frozenset(policy.retry_on)
        self.codes = frozenset(policy.retriable_status_codes)
        self.base_ms = max(1, round(policy.retry_back_off.base_interval_s * 1000))
        max_s = policy.retry_back_off.max_interval_s
        self.max_ms = round(max_s * 1000) if max_s is not None else 10 * self.base_ms
        if self.max_ms < self.base_ms:
            raise ValueError(f"max_interval ({self.max_ms} ms) is below base_interval ({self.base_ms} ms)")
        self.previous_hosts = "previous_hosts" in policy.retry_host_predicate
        self.host_selection_max_attempts = policy.host_selection_retry_max_attempts
        self.per_try_timeout_s = policy.per_try_timeout_s

    def retriable(self, outcome: str) -> bool:
        """Whether a try that ended with ``outcome`` is retried by ``retry_on`` or ``retriable_status_codes``.

        Local overflow replies and the route timeout are never retried, even
        when their status is listed.
        """
        if self.retry_on & retry_classes(outcome):
            return True
        return "retriable-status-codes" in self.retry_on and outcome not in (
            OVERFLOW_MAX_REQUESTS, OVERFLOW_PENDING, ROUTE_TIMEOUT) and STATUS.get(outcome) in self.codes


class BackOff:
    """Envoy's JitteredExponentialBackOffStrategy for one request.

    Interval I starts at base; each call returns floor(u x I) ms for u in
    [0, 1) (Envoy: random() % I) and then doubles I while I < max / 2, else
    sets it to max. With 25 ms and 250 ms: [0,25), [0,50), [0,100), [0,200),
    then [0,250) ms.
    """

    __slots__ = ("interval_ms", "max_ms", "limit_ms")

    def __init__(self, base_ms: int, max_ms: int):
        self.interval_ms = base_ms
        self.max_ms = max_ms
        self.limit_ms = max_ms // 2

    def next_ms(self, u: float) -> int:
        """The next back-off in whole milliseconds, floor(u x I) for ``u`` uniform in [0, 1); then I grows."""
        interval = self.interval_ms
        self.interval_ms = interval * 2 if interval < self.limit_ms else self.max_ms
        return int(u * interval)


def retry_limit(breakers: CircuitBreakers, active: int, pending: int = 0) -> int:
    """How many retries may be in flight: max_retries, or the retry budget's allowance.

    Budget: max(min_retry_concurrency, budget_percent / 100 x (active + pending)),
    where active counts the cluster's requests in flight, retries included.
    """
    budget = breakers.retry_budget
    if budget is None:
        return breakers.max_retries
    return max(budget.min_retry_concurrency, int(budget.budget_percent / 100.0 * (active + pending)))
