"""The HTTP/1.1 wire format shared by the reference fleet's backend and load generator.

:mod:`.backend` is a minimal server and :mod:`.loadgen` a minimal client;
their peers are Envoy, HAProxy and each other, so this is the subset of
HTTP/1.1 those speak, not all of it:

- :func:`build_request` and :func:`build_response` give whole messages as
  bytes (both programs build them once and reuse them);
- :func:`parse_request_head` and :func:`parse_response_head` read a head
  (the start line and the headers, without the blank line): framing by
  ``Content-Length`` (and, for responses, chunked transfer coding or the
  connection's close), keep-alive (HTTP/1.1 keeps the connection unless
  ``Connection: close``; HTTP/1.0 closes it unless ``Connection:
  keep-alive``);
- :class:`RequestParser` and :class:`ResponseParser` take the bytes of a
  connection as they arrive, in pieces of any size, pipelined or not.

Malformed input raises :class:`HttpError`, whose ``status`` is the answer a
server gives it (400, 431 or 501).

These run for every request at thousands of requests per second on one
core, hence plain tuples instead of objects, and parsers that read the bytes
as received rather than copying them through a buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

#: Reason phrases of the statuses the backend sends; any other reads "Status".
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}
#: Largest request head :class:`RequestParser` waits for (bytes); beyond it, 431.
MAX_HEAD_BYTES = 64 * 1024

#: :attr:`ResponseParser.need` while the head has not all arrived.
HEAD = -1
#: Body length of a response in chunked transfer coding.
CHUNKED = -2
#: Body length of a response that runs until the server closes the connection.
UNTIL_CLOSE = -3

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_BAD_NAME = frozenset(" :\r\n\t")

#: A parsed request head: ``(method, target, close, content_length, header_value)``.
RequestHead = tuple[bytes, bytes, bool, int, bytes]


class HttpError(ValueError):
    """Input that is not the HTTP/1.1 this module reads.

    Attributes:
        status: The status a server answers it with (400, 431 or 501); 400
            for a malformed response too, where no one answers.
    """

    def __init__(self, message: str, status: int = 400):
        """An error with its message and the status a server answers it with.

        Args:
            message: What is wrong, quoting the offending bytes.
            status: 400, 431 or 501.
        """
        super().__init__(message)
        self.status = status


def _show(data: bytes, limit: int = 80) -> str:
    """``data`` quoted for an error message, cut to ``limit`` bytes (heads can be 64 KiB)."""
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


# --------------------------------------------------------------------------- building



def _content_length(text: bytes) -> int:
    """A Content-Length header's value; HttpError for anything but a whole number >= 0."""
    try:
        length = int(text)
    except ValueError:
        length = -1
    if length < 0:
        raise HttpError(f"bad Content-Length {_show(text.strip())}")
    return length

def build_request(method: str, target: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                  *, host: str | None = None, body: bytes = b"") -> bytes:
    """A whole HTTP/1.1 request as bytes (header text in Latin-1, as HTTP has it).

    Args:
        method: The method token (``"GET"``).
        target: The request target, an absolute path with an optional query.
        headers: Header names and values, sent in this order.
        host: Sent first as ``Host`` unless ``headers`` has a Host header of
            its own (HTTP/1.1 requires one).
        body: The body; when not empty, ``Content-Length`` is added unless
            ``headers`` has one.

    Returns:
        The request line, the headers, the blank line and the body.

    Raises:
        HttpError: A method, target, header name or value that would break
            the framing (spaces, colons in names, line breaks).
    """
    items = list(headers.items() if isinstance(headers, Mapping) else headers)
    given = {name.lower() for name, _ in items}
    if host is not None and "host" not in given:
        items.insert(0, ("Host", host))
    if body and "content-length" not in given:
        items.append(("Content-Length", str(len(body))))
    if not method or any(c in method for c in " \r\n"):
        raise HttpError(f"bad method {method!r}")
    if not target or any(c in target for c in " \r\n"):
        raise HttpError(f"bad request target {target!r}")
    for name, value in items:
        if not name or not _BAD_NAME.isdisjoint(name) or "\r" in value or "\n" in value:
            raise HttpError(f"bad header {name!r}: {value!r}")
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return text.encode("latin-1") + body


def build_response(status: int, body: bytes, *, close: bool = False,
                   content_type: str = "application/octet-stream") -> bytes:
    """A whole HTTP/1.1 response as bytes, framed by ``Content-Length``.

    Args:
        status: The status code; its reason phrase comes from :data:`REASONS`.
        body: The body.
        close: Add ``Connection: close`` (the server closes after writing it).
        content_type: The ``Content-Type`` value.

    Returns:
        The status line, ``Content-Type``, ``Content-Length`` (and
        ``Connection: close``), the blank line and the body.
    """
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n")
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body


# --------------------------------------------------------------------------- heads


def parse_request_head(head: bytes, header: bytes | None = None, missing: bytes = b"") -> RequestHead | None:
    """Read a request head: the request line and the headers, without the blank line.

    Args:
        head: The bytes before the first blank line. CRLFs before the
            request line are skipped (a client may send them between requests).
        header: A header name, lower case, whose value (stripped) is
            returned; None for none.
        missing: What is returned for ``header`` when the request lacks it.

    Returns:
        ``(method, target, close, content_length, header_value)``, where
        ``close`` says the connection ends after the answer (``Connection:
        close``, or HTTP/1.0 without ``Connection: keep-alive``) and
        ``content_length`` is 0 when absent. None when ``head`` holds only
        CRLFs.

    Raises:
        HttpError: A request line that is not ``METHOD TARGET HTTP/1.x``, a
            header line without a colon, a bad ``Content-Length`` (400); a
            ``Transfer-Encoding`` (501: request bodies are framed by length
            only).
    """
    head = head.lstrip(b"\r\n")
    if not head:
        return None
    lines = head.split(_CRLF)
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HttpError(f"bad request line {_show(lines[0])}")
    method, target, version = parts
    close = version == b"HTTP/1.0"
    length = 0
    value = missing
    for line in lines[1:]:
        name, sep, text = line.partition(b":")
        if not sep:
            raise HttpError(f"header line without a colon: {_show(line)}")
        name = name.strip().lower()
        if name == b"content-length":
            length = _content_length(text)
        elif name == b"connection":
            token = text.strip().lower()
            if token == b"close":
                close = True
            elif token == b"keep-alive":
                close = False
        elif name == header:
            value = text.strip()
        elif name == b"transfer-encoding":
            raise HttpError("Transfer-Encoding in a request is not supported", 501)
    return method, target, close, length, value


def parse_response_head(head: bytes) -> tuple[int, bool, int]:
    """Read a response head: the status line and the headers, without the blank line.

    Args:
        head: The bytes before the first blank line.

    Returns:
        ``(status, keep_alive, body_length)``: ``body_length`` is the
        ``Content-Length``, :data:`CHUNKED`, or :data:`UNTIL_CLOSE` when the
        head frames the body neither way (and then ``keep_alive`` is False);
        0 for 204 and 304, which have no body. For an interim (1xx)
        response the caller reads the next head.

    Raises:
        HttpError: A status line that is not ``HTTP/1.x NNN ...`` or a bad
            ``Content-Length``.
    """
    lines = head.split(_CRLF)
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"bad status line {_show(lines[0])}")
    status = int(parts[1])
    keep = parts[0] != b"HTTP/1.0"
    length = UNTIL_CLOSE
    for line in lines[1:]:
        name, _, text = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = _content_length(text)
        elif name == b"transfer-encoding" and b"chunked" in text.lower():
            length = CHUNKED
        elif name == b"connection":
            token = text.strip().lower()
            if token == b"close":
                keep = False
            elif token == b"keep-alive":
                keep = True
    if status in (204, 304):
        length = 0
    elif length == UNTIL_CLOSE:
        keep = False
    return status, keep, length


def _skip_chunks(data: bytes, pos: int) -> tuple[int, bool]:
    """Skip the whole chunks of a chunked body that start at ``data[pos]``.

    Returns:
        The position after the last whole chunk, and True if that was the
        last chunk (size 0) with its trailers and blank line.

    Raises:
        HttpError: A chunk size that is not hexadecimal, or negative.
    """
    while True:
        eol = data.find(_CRLF, pos)
        if eol < 0:
            return pos, False
        line = data[pos:eol].split(b";")[0].strip() or b"0"
        try:
            size = int(line, 16)
        except ValueError:
            size = -1
        if size < 0:
            raise HttpError(f"bad chunk size {_show(line)}")
        if size == 0:
            if data.startswith(_CRLF, eol + 2):
                return eol + 4, True
            end = data.find(_HEAD_END, eol)
            if end < 0:
                return pos, False
            return end + 4, True
        nxt = eol + 2 + size + 2
        if len(data) < nxt:
            return pos, False
        pos = nxt


# --------------------------------------------------------------------------- incremental parsers
#
# Both parsers work on the bytes just received and keep only what is
# unfinished (a head, or a chunk) for the next call: in the usual case, a
# whole message per call, nothing is copied into a buffer and back. The
# Content-Length bodies nobody reads are dropped as they arrive instead of
# being held until complete.


class RequestParser:
    """Splits a connection's incoming bytes into requests, pipelined or not.

    Each complete request (head and ``Content-Length`` body) is handed to
    ``on_request(head, body)`` in arrival order, ``head`` as
    :func:`parse_request_head` returns it. After a request that closes the
    connection, and after an error, the parser is ``closed`` and ignores
    whatever else arrives: the server answers and closes.

    Bodies are streamed past, not buffered, unless ``keep_body``.
    """

    __slots__ = ("on_request", "header", "missing", "keep_body", "max_head", "buf", "closed",
                 "body_left", "body_head", "body")

    def __init__(self, on_request: Callable[[RequestHead, bytes], object], *, header: bytes | None = None,
                 missing: bytes = b"", keep_body: bool = False, max_head: int = MAX_HEAD_BYTES):
        """Set up a parser for one connection.

        Args:
            on_request: Called with ``(head, body)`` for each request.
            header: See :func:`parse_request_head`.
            missing: See :func:`parse_request_head`.
            keep_body: Pass bodies to ``on_request``; otherwise ``body`` is
                always ``b""`` and body bytes are dropped as they arrive.
            max_head: Longest incomplete head waited for (bytes).
        """
        self.on_request = on_request
        self.header = header
        self.missing = missing
        self.keep_body = keep_body
        self.max_head = max_head
        self.buf = bytearray()
        self.closed = False
        self.body_left = 0
        self.body_head: RequestHead | None = None
        self.body = b""

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the connection; call ``on_request`` for each request they complete.

        Args:
            data: Any number of bytes, split anywhere.

        Raises:
            HttpError: A malformed head, or an incomplete head longer than
                ``max_head`` (431). The requests before it have been handed
                over; the parser is closed.
        """
        if self.closed:
            return
        buf = self.buf
        if buf:
            data = b"".join((buf, data))
            del buf[:]
        pos = 0
        n = len(data)
        on_request = self.on_request
        while pos < n and not self.closed:
            left = self.body_left
            if left:
                take = min(left, n - pos)
                if self.keep_body:
                    self.body += data[pos:pos + take]
                pos += take
                left -= take
                self.body_left = left
                if left:
                    return
                head, body = self.body_head, self.body
                self.body_head, self.body = None, b""
                if head[2]:
                    self.closed = True
                on_request(head, body)
                continue
            end = data.find(_HEAD_END, pos)
            if end < 0:
                if n - pos > self.max_head:
                    self.closed = True
                    raise HttpError(f"request head longer than {self.max_head} bytes", 431)
                buf += data[pos:]
                return
            try:
                head = parse_request_head(data[pos:end], self.header, self.missing)
            except HttpError:
                self.closed = True
                raise
            pos = end + 4
            if head is None:
                continue
            if head[3]:
                self.body_left = head[3]
                self.body_head = head
                continue
            if head[2]:
                self.closed = True
            on_request(head, b"")


class ResponseParser:
    """Reads the responses of a connection that carries one request at a time.

    :meth:`feed` the bytes as they arrive; when it returns True, one whole
    response is in and :attr:`status` and :attr:`keep` describe it. Interim
    (1xx) responses are skipped. Bytes past the response are kept, the start
    of the next one. Bodies are dropped, not returned.

    Attributes:
        status: The status of the response last completed.
        keep: Whether the connection stays open after it.
        need: The body bytes still due, or :data:`HEAD`, :data:`CHUNKED`,
            :data:`UNTIL_CLOSE`.
    """

    __slots__ = ("buf", "need", "status", "keep")

    def __init__(self) -> None:
        """An empty parser, waiting for a head."""
        self.buf = bytearray()
        self.need = HEAD
        self.status = 0
        self.keep = True

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the connection.

        Args:
            data: Any number of bytes, split anywhere.

        Returns:
            True when they complete a response (the parser then waits for
            the next head).

        Raises:
            HttpError: A malformed head or chunk size; the connection is out
                of step and should be dropped.
        """
        buf = self.buf
        if buf:
            data = b"".join((buf, data))
            del buf[:]
        pos = 0
        n = len(data)
        while True:
            need = self.need
            if need == HEAD:
                end = data.find(_HEAD_END, pos)
                if end < 0:
                    break
                status, keep, length = parse_response_head(data[pos:end])
                pos = end + 4
                if 100 <= status < 200:
                    continue  # an interim answer: the real one follows
                self.status = status
                self.keep = keep
                self.need = length
                continue
            if need >= 0:
                if n - pos < need:
                    self.need = need - (n - pos)
                    return False
                pos += need
            elif need == CHUNKED:
                pos, last = _skip_chunks(data, pos)
                if not last:
                    break
            else:
                return False  # UNTIL_CLOSE: only feed_eof ends it
            self.need = HEAD
            if pos < n:
                buf += data[pos:]
            return True
        if pos < n:
            buf += data[pos:]
        return False

    def feed_eof(self) -> bool:
        """The peer closed the connection.

        Returns:
            True when that completes a response whose body ran to the close.
        """
        if self.need == UNTIL_CLOSE:
            self.need = HEAD
            return True
        return False
