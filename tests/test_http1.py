"""``reference_gateway.http1``: the wire format of the reference backend and load generator.

No sockets here: bytes go in, parsed messages come out. The real servers are
exercised in ``test_reference_servers.py``.
"""

from __future__ import annotations

import pytest

from reference_gateway.http1 import (
    CHUNKED,
    HEAD,
    UNTIL_CLOSE,
    HttpError,
    RequestParser,
    ResponseParser,
    build_request,
    build_response,
    parse_request_head,
    parse_response_head,
)

GW = b"x-fleetsim-gateway"


def requests_of(pieces, keep_body=True) -> tuple[list[tuple], RequestParser]:
    """Feed ``pieces`` to a RequestParser; the (method, target, close, gateway, body) it hands over."""
    got: list[tuple] = []
    parser = RequestParser(lambda head, body: got.append((head[0], head[1], head[2], head[4], body)),
                           header=GW, missing=b"-", keep_body=keep_body)
    for piece in pieces:
        parser.feed(piece)
    return got, parser


def responses_of(pieces) -> list[tuple[int, bool]]:
    """Feed ``pieces`` to a ResponseParser; the (status, keep) of each response it completes."""
    parser = ResponseParser()
    done = []
    for piece in pieces:
        # A piece may complete one response and start the next: feed the rest again with nothing new.
        if parser.feed(piece):
            done.append((parser.status, parser.keep))
            while parser.buf and parser.feed(b""):
                done.append((parser.status, parser.keep))
    return done


def every_split(data: bytes):
    """``data`` in two pieces, cut at every offset, and byte by byte."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i:i + 1] for i in range(len(data))]


# --------------------------------------------------------------------------- building


def test_build_response_matches_the_backend_wire_format():
    assert build_response(200, b"hello") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello")
    assert build_response(503, b"", close=True, content_type="text/plain") == (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n")
    assert build_response(299, b"").startswith(b"HTTP/1.1 299 Status\r\n")


def test_build_request_puts_host_first_unless_given():
    assert build_request("GET", "/api/x?q=1", {"x-a": "1"}, host="127.0.0.1:80") == (
        b"GET /api/x?q=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\nx-a: 1\r\n\r\n")
    assert build_request("GET", "/", [("x-a", "1"), ("HOST", "h")], host="ignored") == (
        b"GET / HTTP/1.1\r\nx-a: 1\r\nHOST: h\r\n\r\n")
    assert build_request("POST", "/p", body=b"abc") == b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"


@pytest.mark.parametrize("method, target, headers", [
    ("GET", "/a b", {}), ("GET", "/a\r\n", {}), ("G T", "/", {}), ("", "/", {}),
    ("GET", "/", {"x a": "1"}), ("GET", "/", {"x:a": "1"}), ("GET", "/", {"": "1"}),
    ("GET", "/", {"x-a": "1\r\nInjected: yes"}),
])
def test_build_request_refuses_what_would_break_the_framing(method, target, headers):
    with pytest.raises(HttpError):
        build_request(method, target, headers)


# --------------------------------------------------------------------------- round trips


def test_request_round_trip():
    data = build_request("PUT", "/api/x?y=1", {"X-Fleetsim-Gateway": " gw-A ", "Connection": "close"},
                         host="h", body=b"payload")
    head, _, body = data.partition(b"\r\n\r\n")
    assert parse_request_head(head, GW, b"-") == (b"PUT", b"/api/x?y=1", True, 7, b"gw-A")
    got, parser = requests_of([data])
    assert got == [(b"PUT", b"/api/x?y=1", True, b"gw-A", b"payload")] and parser.closed


def test_response_round_trip():
    for status, close in ((200, False), (500, False), (503, True)):
        data = build_response(status, b"e" * 150, close=close)
        head = data.partition(b"\r\n\r\n")[0]
        assert parse_response_head(head) == (status, not close, 150)
        assert responses_of([data]) == [(status, not close)]


def test_keep_alive_rules():
    assert parse_request_head(b"GET / HTTP/1.1")[2] is False
    assert parse_request_head(b"GET / HTTP/1.0")[2] is True
    assert parse_request_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive")[2] is False
    assert parse_request_head(b"GET / HTTP/1.1\r\nconnection:  CLOSE ")[2] is True
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0")[1] is True
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0")[1] is False
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive")[1] is True
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close")[1] is False


def test_response_framing():
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked") == (200, True, CHUNKED)
    # Neither length nor chunked: the body runs to the close, so the connection cannot be kept.
    assert parse_response_head(b"HTTP/1.1 200 OK") == (200, False, UNTIL_CLOSE)
    assert parse_response_head(b"HTTP/1.1 204 No Content") == (204, True, 0)
    assert parse_response_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99") == (304, True, 0)


def test_the_requested_header_and_its_default():
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: h")[4] == b""
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: h", GW, b"-")[4] == b"-"
    assert parse_request_head(b"GET / HTTP/1.1\r\nX-FLEETSIM-GATEWAY:gw-1", GW, b"-")[4] == b"gw-1"


# --------------------------------------------------------------------------- incremental parsing


PIPELINE = (b"GET /a HTTP/1.1\r\nHost: t\r\nx-fleetsim-gateway: g1\r\n\r\n"
            b"POST /b?q=1 HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
            b"\r\n"  # a stray CRLF between requests is allowed
            b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
            b"PUT /d HTTP/1.1\r\ncontent-length: 3\r\nConnection: close\r\n\r\nxyz"
            b"GET /never-read HTTP/1.1\r\n\r\n")
PIPELINE_REQUESTS = [(b"GET", b"/a", False, b"g1", b""), (b"POST", b"/b?q=1", False, b"-", b"hello world"),
                     (b"GET", b"/c", False, b"-", b""), (b"PUT", b"/d", True, b"-", b"xyz")]


def test_pipelined_requests_split_at_every_offset():
    for pieces in every_split(PIPELINE):
        got, parser = requests_of(pieces)
        assert got == PIPELINE_REQUESTS, pieces
        assert parser.closed  # nothing after Connection: close is read


def test_bodies_are_dropped_unless_kept():
    for pieces in every_split(PIPELINE):
        got, _ = requests_of(pieces, keep_body=False)
        assert got == [r[:4] + (b"",) for r in PIPELINE_REQUESTS]


RESPONSES = (b"HTTP/1.1 100 Continue\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
             b"HTTP/1.1 204 No Content\r\n\r\n"
             b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n"
             b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
             b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\nee")


def test_pipelined_responses_split_at_every_offset():
    for pieces in every_split(RESPONSES):
        assert responses_of(pieces) == [(200, True), (204, True), (201, True), (500, True), (503, False)], pieces


def test_content_length_body_is_counted_down_as_it_arrives():
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")
    assert parser.need == 6 and not parser.buf
    assert not parser.feed(b"efghi")
    assert parser.feed(b"jHTTP/1.1")  # the start of the next response is kept
    assert parser.need == HEAD and parser.buf == b"HTTP/1.1"


def test_body_until_close():
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\nsome body")
    assert not parser.feed(b" and more")
    assert parser.feed_eof() and (parser.status, parser.keep) == (200, False)
    assert not parser.feed_eof()  # a close between responses completes nothing


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("head, status, words", [
    (b"GARBAGE", 400, "bad request line"),
    (b"GET /a b HTTP/1.1", 400, "bad request line"),
    (b"GET / SPDY/3", 400, "bad request line"),
    (b"GET / HTTP/1.1\r\nno colon here", 400, "without a colon"),
    (b"GET / HTTP/1.1\r\nContent-Length: ten", 400, "Content-Length"),
    (b"GET / HTTP/1.1\r\nContent-Length: -1", 400, "Content-Length"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", 501, "Transfer-Encoding"),
])
def test_malformed_request_head(head, status, words):
    with pytest.raises(HttpError, match=words) as err:
        parse_request_head(head)
    assert err.value.status == status


def test_a_bad_request_closes_the_parser_after_the_good_ones():
    got, parser = [], RequestParser(lambda head, body: got.append(head[1]))
    with pytest.raises(HttpError, match="bad request line") as err:
        parser.feed(b"GET /ok HTTP/1.1\r\n\r\nNOT HTTP\r\n\r\nGET /later HTTP/1.1\r\n\r\n")
    assert err.value.status == 400 and got == [b"/ok"] and parser.closed
    parser.feed(b"GET /ignored HTTP/1.1\r\n\r\n")
    assert got == [b"/ok"]


def test_an_endless_head_is_refused_with_431():
    parser = RequestParser(lambda head, body: None, max_head=1024)
    parser.feed(b"GET / HTTP/1.1\r\n" + b"x-a: b\r\n" * 100)  # 816 bytes: still waiting
    with pytest.raises(HttpError, match="longer than 1024") as err:
        parser.feed(b"x-a: b\r\n" * 50)
    assert err.value.status == 431 and parser.closed


@pytest.mark.parametrize("data, words", [
    (b"SMTP ready\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "chunk size"),
])
def test_malformed_response(data, words):
    with pytest.raises(HttpError, match=words):
        ResponseParser().feed(data)


# --------------------------------------------------------------------------- the backend's use


class _Transport:
    def __init__(self):
        self.out = bytearray()
        self.closed = False

    def write(self, data):
        self.out += data

    def close(self):
        self.closed = True


def test_backend_connection_answers_in_order_then_400_and_close():
    from reference_gateway import backend

    class Echo(backend.Endpoint):
        def handle(self, req):
            req.conn.reply(req, build_response(200, req.path + b" " + req.gateway))

    conn = backend.HttpConnection(Echo())
    transport = _Transport()
    conn.connection_made(transport)
    stream = (b"GET /a?x=1 HTTP/1.1\r\nx-fleetsim-gateway: g\r\n\r\n"
              b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
              b"BROKEN\r\n\r\n")
    for i in range(len(stream)):
        conn.data_received(stream[i:i + 1])
    assert transport.out == (build_response(200, b"/a g") + build_response(200, b"/b -")
                             + build_response(400, b"Bad Request", close=True, content_type="text/plain"))
    assert transport.closed
