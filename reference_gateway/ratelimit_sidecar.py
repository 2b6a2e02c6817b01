"""A rate-limit sidecar for the reference fleet: Envoy's ext_authz HTTP service, backed by Redis.

Envoy's ``envoy.filters.http.ext_authz`` filter sends each request's head here
before routing it. The sidecar runs the source article's token-bucket script
(``tokens`` and ``last_refill`` in a hash per key; refill by the elapsed
milliseconds over the window times the limit, capped at the burst) on Redis
with EVALSHA, and answers 200 (allowed: Envoy routes the request) or 429
(Envoy answers the client 429). When Redis fails (refused connection, reset,
error reply) it answers at once, without retrying: 200 with fail-open, 500
with ``failure_mode_deny``, as the article's ``catch`` does.

One Redis connection, pipelined: calls are written as they come and their
replies matched in order (RESP2).

``GET /__stats`` (on the same port) answers JSON counts since the last
``POST /__reset``: ``allowed``, ``denied``, ``failed_open``,
``failed_closed``, ``redis_rtt_s_sum`` and ``redis_calls`` (answered
EVALSHAs, for the mean round trip).

Run as ``python -m reference_gateway.ratelimit_sidecar --spec SPEC.json`` with
``{"port", "redis_port", "limit", "burst", "window_ms", "key",
"failure_mode_deny"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque

from .http1 import HttpError, RequestParser
from .specs import load_json_spec

#: The source article's script (its TypeScript's luaScript), verbatim in behaviour.
TOKEN_BUCKET_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local last_refill = tonumber(redis.call('hget', key, 'last_refill')) or 0
local tokens = tonumber(redis.call('hget', key, 'tokens')) or burst
local elapsed = now - last_refill
local new_tokens = math.min(burst, tokens + (elapsed / window) * limit)
if new_tokens >= 1 then
  redis.call('hset', key, 'tokens', new_tokens - 1)
  redis.call('hset', key, 'last_refill', now)
  return 1
else
  redis.call('hset', key, 'tokens', new_tokens)
  redis.call('hset', key, 'last_refill', now)
  return 0
end
"""

_REASONS = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 404: "Not Found"}


def _response(status: int, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


def encode_command(*args) -> bytes:
    """A RESP2 array of bulk strings."""
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class RedisReplyError(RuntimeError):
    """Redis answered ``-ERR ...``."""


class PipelinedRedis:
    """One connection; replies matched to calls in order. Any failure fails every call waiting."""

    def __init__(self, port: int):
        self.port = port
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: deque[asyncio.Future] = deque()
        self._lock: asyncio.Lock | None = None

    async def _connect(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer = writer
        asyncio.get_running_loop().create_task(self._read(reader, writer))

    async def call(self, *args):
        """Send one command and wait for its reply; ConnectionError or RedisReplyError on failure."""
        if self.writer is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:  # one connection, so that replies match calls in order
                if self.writer is None:
                    await self._connect()  # refused at once on loopback when Redis is down: no retry
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        self.writer.write(encode_command(*args))
        return await fut

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                reply = await self._reply(reader)
                fut = self.waiting.popleft()
                if isinstance(reply, RedisReplyError):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            if self.writer is writer:
                self.writer = None
            writer.close()
            while self.waiting:
                self.waiting.popleft().set_exception(ConnectionError(f"redis connection lost: {e}"))

    @staticmethod
    async def _reply(reader: asyncio.StreamReader):
        line = await reader.readuntil(b"\r\n")
        kind, body = line[:1], line[1:-2]
        if kind == b":":
            return int(body)
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            return RedisReplyError(body.decode("utf-8", "replace"))
        if kind == b"$":
            n = int(body)
            if n < 0:
                return None
            data = await reader.readexactly(n + 2)
            return data[:-2].decode()
        raise ValueError(f"unexpected reply {line!r}")


class Sidecar:
    """The ext_authz HTTP service (see the module docstring)."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.redis = PipelinedRedis(spec["redis_port"])
        self.sha: str | None = None
        self.key = f"ratelimit:{spec['key']}"
        self.reset()

    def reset(self) -> None:
        self.counts = {"allowed": 0, "denied": 0, "failed_open": 0, "failed_closed": 0,
                       "redis_calls": 0, "redis_rtt_s_sum": 0.0}

    async def decide(self) -> int:
        s = self.spec
        try:
            if self.sha is None:
                self.sha = await self.redis.call("SCRIPT", "LOAD", TOKEN_BUCKET_LUA)
            t0 = time.perf_counter()
            now_ms = int(time.time() * 1000)  # the article's Date.now()
            allowed = await self.redis.call("EVALSHA", self.sha, 1, self.key, now_ms, s["limit"], s["burst"],
                                            s["window_ms"])
            self.counts["redis_calls"] += 1
            self.counts["redis_rtt_s_sum"] += time.perf_counter() - t0
        except (OSError, RedisReplyError):
            self.sha = None  # a restarted Redis has no script
            if s["failure_mode_deny"]:
                self.counts["failed_closed"] += 1
                return 500
            self.counts["failed_open"] += 1
            return 200
        if allowed == 1:
            self.counts["allowed"] += 1
            return 200
        self.counts["denied"] += 1
        return 429


class _Conn(asyncio.Protocol):
    def __init__(self, sidecar: Sidecar):
        self.sidecar = sidecar
        self.transport = None
        self.parser = RequestParser(self._request)
        self.queue: deque[asyncio.Future] = deque()  # answers in request order (HTTP/1.1 pipelining)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except HttpError:
            self.transport.close()

    def _request(self, head, _body: bytes) -> None:
        target = head[1].decode() if isinstance(head[1], bytes) else head[1]
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.queue.append(fut)
        if target.startswith("/__stats"):
            fut.set_result(_response(200, json.dumps(self.sidecar.counts).encode(), "application/json"))
        elif target.startswith("/__reset"):
            self.sidecar.reset()
            fut.set_result(_response(200))
        else:
            loop.create_task(self._check(fut))
        self._flush()

    async def _check(self, fut: asyncio.Future) -> None:
        fut.set_result(_response(await self.sidecar.decide()))
        self._flush()

    def _flush(self) -> None:
        while self.queue and self.queue[0].done():
            data = self.queue.popleft().result()
            if not self.transport.is_closing():
                self.transport.write(data)


async def serve(spec: dict) -> None:
    sidecar = Sidecar(spec)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(sidecar), "127.0.0.1", spec["port"], backlog=1024)
    async with server:
        await server.serve_forever()


def _parse(obj) -> dict:
    if not isinstance(obj, dict):
        raise ValueError("the spec must be a JSON object")
    for k in ("port", "redis_port", "limit", "burst", "window_ms", "key", "failure_mode_deny"):
        if k not in obj:
            raise ValueError(f"missing field {k!r}")
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True)
    args = ap.parse_args(argv)
    spec = load_json_spec(args.spec, _parse)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the reference fleet's venv has it
        pass
    asyncio.run(serve(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
