"""The records that travel through the fleet as SimPy timeouts' values.

A :class:`Request` is what a client sends; an :class:`Attempt` is one try of
it from a gateway to one backend host. Plain classes with ``__slots__``: they
are created once per request on the hot path.
"""

from __future__ import annotations

#: Bytes of a locally generated reply (a 503 or 504 with Envoy's short body and headers).
LOCAL_REPLY_BYTES = 150

OK = "ok"
BACKEND_OVERFLOW = "backend_overflow"  # 503: the backend's queue was full
BACKEND_ERROR = "backend_error"  # 500: the backend failed the request
ROUTE_TIMEOUT = "route_timeout"  # 504: the gateway's route timeout fired
PER_TRY_TIMEOUT = "per_try_timeout"  # 504: the last try's per-try timeout fired
OVERFLOW_MAX_REQUESTS = "overflow_max_requests"  # 503: the cluster's max_requests breaker
OVERFLOW_PENDING = "overflow_pending"  # 503: max_pending_requests (upstream_rq_pending_overflow)
UPSTREAM_RESET = "upstream_reset"  # 503: the upstream reset the stream (instance crashed)
CONNECT_FAILURE = "connect_failure"  # 503: the upstream refused the connection (instance down)
CLIENT_TIMEOUT = "client_timeout"  # the client stopped waiting for its try
DROPPED_EXPIRED = "backend_dropped_expired"  # 503: the backend dropped it unserved, its deadline passed
GATEWAY_RESET = "gateway_reset"  # no status: the client's connection was reset (its gateway or node crashed)
NO_HEALTHY_UPSTREAM = "no_healthy_upstream"  # 503: the balancer node had no gateway up
BAD_CONFIG = "bad_config"  # 503: the gateway runs a bad config version (sim.components.controlplane)
RATE_LIMITED = "rate_limited"  # 429: the gateway's rate-limit filter denied it
RATE_LIMIT_ERROR = "rate_limit_error"  # 500: the rate-limit call failed and failure_mode_deny is set


#: The HTTP status the client sees for each outcome.
STATUS = {
    OK: 200,
    BACKEND_ERROR: 500,
    BACKEND_OVERFLOW: 503,
    UPSTREAM_RESET: 503,  # "upstream connect error or disconnect/reset before headers"
    CONNECT_FAILURE: 503,
    OVERFLOW_MAX_REQUESTS: 503,  # x-envoy-overloaded
    OVERFLOW_PENDING: 503,
    DROPPED_EXPIRED: 503,  # the backend shed it unserved: its caller's deadline had passed
    NO_HEALTHY_UPSTREAM: 503,  # the balancer node had no gateway up (never retried by a gateway)
    BAD_CONFIG: 503,  # the gateway's configuration fails the request (a bad version, before its rollback)
    PER_TRY_TIMEOUT: 504,
    ROUTE_TIMEOUT: 504,
    RATE_LIMITED: 429,
    RATE_LIMIT_ERROR: 500,  # Envoy's rate-limit filter with failure_mode_deny
}

#: Replies the gateway makes itself: no host saw these tries.
LOCAL_REPLIES = frozenset({OVERFLOW_MAX_REQUESTS, OVERFLOW_PENDING, NO_HEALTHY_UPSTREAM, BAD_CONFIG, RATE_LIMITED,
                           RATE_LIMIT_ERROR})

#: The HTTP status the outlier detector sees for each way a try can end at a
#: host (Envoy without ``split_external_local_origin_errors``: local-origin
#: failures become codes: a reset or refused connection is 503,
#: LocalOriginConnectFailed; a per-try or route timeout 504, LocalOriginTimeout).
HOST_STATUS = {outcome: code for outcome, code in STATUS.items() if outcome not in LOCAL_REPLIES}


class Request:
    """One client request.

    Attributes:
        t0: issue time (s).
        counted: issued after warm-up, so it counts in the KPIs.
        service: target service name.
        req_bytes, resp_bytes: sizes on the wire (bytes).
        client: the population that issued it (gets the response).
        backend_tries: tries a gateway sent to backends for it (retries included).
        lb_node: the balancer node that carried it; gateway: the gateway instance.
        outcome: ``OK`` or a failure cause, set once when it is answered.
    """

    __slots__ = ("t0", "counted", "service", "req_bytes", "resp_bytes", "client", "lb_node",
                 "lb_index", "gateway", "outcome", "attempt", "cluster", "retries", "tried", "backoff",
                 "deadline", "call", "backend_tries", "conn", "handshake")

    def __init__(self, t0: float, counted: bool, service: str, req_bytes: float, client):
        # Only what may be read before it is written; the balancer, gateway
        # and the answer set the rest.
        self.t0 = t0
        self.counted = counted
        self.service = service
        self.req_bytes = req_bytes
        self.client = client
        self.outcome = None
        self.backend_tries = 0  # tries the gateway sent to a backend for it


class Attempt:
    """One try of a request from a gateway to a backend host.

    Attributes:
        request: the request it serves.
        host: index of the host in the gateway's cluster.
        backend: the backend instance.
        outcome: ``OK``, ``BACKEND_ERROR`` or ``BACKEND_OVERFLOW`` once answered.
        abandoned: the gateway gave up on it (timeout); a late answer is wasted.
        deadline: when the gateway will stop waiting for it (s): the per-try or
            route timeout, whichever is first (Envoy's x-envoy-expected-rq-timeout-ms).
        t_arrive: when it reached the backend (s); service_s: its service time (s).
    """

    __slots__ = ("request", "cluster", "host", "backend", "outcome", "resp_bytes", "abandoned",
                 "t_arrive", "service_s", "on_reply", "is_retry", "deadline", "conn")

    def __init__(self, request: Request, cluster, host: int, backend, on_reply=None,
                 is_retry: bool = False, deadline: float = float("inf")):
        # Only what may be read before it is written; outcome, resp_bytes,
        # t_arrive and service_s are set by whoever knows them first.
        self.request = request
        self.cluster = cluster
        self.host = host
        self.backend = backend
        self.on_reply = on_reply
        self.abandoned = False
        self.is_retry = is_retry
        self.deadline = deadline
