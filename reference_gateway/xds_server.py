"""The reference control plane: an ADS server (grpcio, xds-protos) serving state of the world and delta.

``python -m reference_gateway.xds_server --port P --services S --add K --log FILE``

Serves :mod:`reference_gateway.xds_resources`' configuration of ``S``
services to Envoys over ADS, both ``StreamAggregatedResources`` (state of
the world) and ``DeltaAggregatedResources`` (delta). On SIGUSR1 it adds
``K`` services (clusters, endpoints, the route) and pushes the change to
every stream at once, as a control plane without debounce or throttle does.

What each stream is sent follows the xDS protocol as the simulator models it:
state of the world sends every Listener and Cluster when any changed, and the
routes and endpoints a client subscribes to only when their version differs
from what this stream was last sent; delta sends the resources whose version
differs from what the client holds (``initial_resource_versions`` on a new
stream). Every event goes to ``FILE`` as one JSON line with a wall-clock time:
``open`` (a stream), ``req`` (a request: ACK or NACK of a nonce),
``resp`` (type, resources, ``bytes``: the encoded response's size),
``synced`` (a stream has ACKed the current version of every type it
subscribes to, or had nothing to receive), ``change``, ``close``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import signal
import threading
import time
from concurrent import futures

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from . import xds_resources as xr


class Log:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1)  # noqa: SIM115 - kept open for the server's life
        self.lock = threading.Lock()

    def __call__(self, ev: str, **kw) -> None:
        line = json.dumps({"t": time.time(), "ev": ev, **kw})
        with self.lock:
            self.f.write(line + "\n")


class State:
    """The configuration and every open stream."""

    def __init__(self, services: int, log: Log):
        self.lock = threading.Lock()
        self.services = services
        self.conf = xr.configuration(services)
        self.streams: dict[int, queue.Queue] = {}
        self.log = log
        self.ids = itertools.count(1)
        self.nonces = itertools.count(1)

    def change(self, added: int) -> None:
        with self.lock:
            self.services += added
            self.conf = xr.configuration(self.services)
            targets = list(self.streams.values())
        self.log("change", services=self.services)
        for q in targets:
            q.put(("push", None))


class Session:
    """One stream's view: what it subscribes to and what it was sent (or holds)."""

    def __init__(self, state: State, delta: bool):
        self.state = state
        self.delta = delta
        self.sid = next(state.ids)
        self.subscribed: dict[str, set | None] = {}  # type -> names (None: wildcard)
        self.sent: dict[str, dict[str, str]] = {}  # type -> name -> version sent or held
        self.pending: dict[str, str] = {}  # type -> nonce awaiting its ACK
        self.asked: set[str] = set()
        self.synced_logged = False

    def responses(self, type_url: str) -> list:
        """What to send on ``type_url`` now (nothing when the client has it all)."""
        if type_url not in self.subscribed:
            return []
        with self.state.lock:
            current = self.state.conf[type_url]
        names = self.subscribed[type_url]
        wanted = current if names is None else {n: current[n] for n in names if n in current}
        sent = self.sent.setdefault(type_url, {})
        changed = {n: va for n, va in wanted.items() if sent.get(n) != va[0]}
        if not changed:
            return []
        nonce = f"{next(self.state.nonces):06d}"
        if self.delta:
            resp = discovery_pb2.DeltaDiscoveryResponse(
                system_version_info="v", type_url=type_url, nonce=nonce,
                resources=[discovery_pb2.Resource(name=n, version=v, resource=a) for n, (v, a) in changed.items()])
            count = len(changed)
        else:
            body = wanted if type_url in xr.FULL_STATE else changed
            resp = discovery_pb2.DiscoveryResponse(
                version_info=f"v{abs(hash(tuple(sorted((n, v) for n, (v, _) in wanted.items())))) % 10**8:08d}",
                type_url=type_url, nonce=nonce, resources=[a for _, a in body.values()])
            count = len(body)
        for n, (v, _) in changed.items():
            sent[n] = v
        self.pending[type_url] = nonce
        self.state.log("resp", sid=self.sid, type=xr.KIND[type_url], resources=count, bytes=resp.ByteSize(),
                       nonce=nonce)
        return [resp]

    def request(self, req) -> list:
        t = req.type_url
        nonce = req.response_nonce
        nack = bool(req.error_detail.message) if req.HasField("error_detail") else False
        if nonce:
            self.state.log("req", sid=self.sid, type=xr.KIND.get(t, t), nonce=nonce, nack=nack)
            if self.pending.get(t) == nonce and not nack:
                del self.pending[t]
        if self.delta:
            if t not in self.subscribed:
                wildcard = t in xr.FULL_STATE and not req.resource_names_subscribe
                self.subscribed[t] = None if wildcard else set()
                self.sent[t] = dict(req.initial_resource_versions)
            if self.subscribed[t] is not None:
                self.subscribed[t] |= set(req.resource_names_subscribe)
                self.subscribed[t] -= set(req.resource_names_unsubscribe)
        else:
            names = set(req.resource_names)
            self.subscribed[t] = None if (t in xr.FULL_STATE and not names) else names
            if not nonce:
                self.sent[t] = {}
        self.asked.add(t)
        out = self.responses(t)
        self._check_synced()
        return out

    def push(self) -> list:
        out = []
        for t in xr.PUSH_ORDER:
            out += self.responses(t)
        self.synced_logged = False
        return out

    def _check_synced(self) -> None:
        if not self.synced_logged and len(self.asked) == 4 and not self.pending:
            self.synced_logged = True
            self.state.log("synced", sid=self.sid)


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, state: State):
        self.state = state

    def _serve(self, request_iterator, context, delta: bool):
        s = Session(self.state, delta)
        q: queue.Queue = queue.Queue()
        with self.state.lock:
            self.state.streams[s.sid] = q
        node = None

        def read():
            try:
                for req in request_iterator:
                    q.put(("req", req))
            except Exception:  # noqa: BLE001 - the stream ended (the client went away)
                pass
            q.put(("end", None))

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                kind, item = q.get()
                if kind == "end":
                    break
                if kind == "req":
                    if node is None and item.node.id:
                        node = item.node.id
                        self.state.log("open", sid=s.sid, node=node, delta=delta)
                    out = s.request(item)
                else:
                    out = s.push()
                yield from out
        finally:
            with self.state.lock:
                self.state.streams.pop(s.sid, None)
            self.state.log("close", sid=s.sid)

    def StreamAggregatedResources(self, request_iterator, context):  # noqa: N802 - the gRPC method's name
        yield from self._serve(request_iterator, context, False)

    def DeltaAggregatedResources(self, request_iterator, context):  # noqa: N802 - the gRPC method's name
        yield from self._serve(request_iterator, context, True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--services", type=int, required=True)
    ap.add_argument("--add", type=int, default=0)
    ap.add_argument("--log", required=True)
    args = ap.parse_args(argv)
    log = Log(args.log)
    state = State(args.services, log)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128),
                         options=[("grpc.max_concurrent_streams", 1000)])
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Ads(state), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    wake = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: wake.set())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    log("ready", services=args.services)
    while not stop.is_set():
        if wake.wait(0.01):
            wake.clear()
            state.change(args.add)
    server.stop(0.5)


if __name__ == "__main__":
    main()
