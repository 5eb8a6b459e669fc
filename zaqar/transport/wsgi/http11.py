"""HTTP/1.1 request parsing without sockets: bytes in, complete requests out.

Strict where leniency lets one request be read two ways (request smuggling
through a proxy): a body framed by both ``Transfer-Encoding`` and
``Content-Length``, differing ``Content-Length`` values, obsolete header line
folding, whitespace before a header's colon and transfer codings other than
``chunked`` are refused. Bodies are bounded by ``max_body``: a larger one is
never buffered; the request is handed over with ``body=None`` so the
application can still answer it (it knows the size from ``content_length``),
and the connection must then close.
"""

from __future__ import annotations

import dataclasses
import re

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # all but tab, CR and LF
# One whole header line: a token, a colon, the value without its surrounding whitespace.
_FIELD = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[^\r]*[^\r \t])?)[ \t]*\r$", re.MULTILINE)
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "expect"})
_DIGITS = re.compile(rb"^[0-9]{1,18}$")
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,16}$")
_MAX_CHUNK_LINE = 1024
_MAX_HEADERS = 128


class ParseError(Exception):
    """The request cannot be read; ``status`` goes back to the peer, then the connection closes."""

    def __init__(self, status: int, reason: str, title: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.title = status, reason, title


@dataclasses.dataclass(slots=True)
class HttpRequest:
    """One request as received.

    ``headers`` keeps every field line in order, names lower-cased.
    ``body`` is None when the declared or received body exceeded the
    parser's ``max_body``; ``content_length`` is then the size declared (or
    seen so far, for a chunked body), and the rest was never read.
    """

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes | None
    content_length: int | None
    keep_alive: bool
    chunked: bool = False


class RequestParser:
    """Feed bytes with ``feed``; take complete requests with ``next_request``."""

    def __init__(self, *, max_head: int = 64 * 1024, max_body: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._max_head, self._max_body = max_head, max_body
        self._head: HttpRequest | None = None  # head parsed, body still arriving
        self._expect_continue = False
        self._chunks: bytearray | None = None
        self._chunk_left = -1  # bytes of the current chunk still to read; -1: a size line is next
        self._chunk_total = 0
        self._in_trailers = False
        self._trailer_bytes = 0
        self.continue_sent = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def started(self) -> bool:
        """Whether part of a request has arrived (the request timeout then runs)."""
        return self._head is not None or bool(self._buf.strip(b"\r\n"))

    @property
    def wants_continue(self) -> bool:
        """The client waits for ``100 Continue`` before sending the body it announced."""
        return self._head is not None and self._expect_continue and not self.continue_sent

    def next_request(self) -> HttpRequest | None:
        """The next complete request, or None until more bytes arrive. Raises ParseError."""
        if self._head is None:
            head = self._parse_head()
            if head is None:
                return None
            self._head = head
            self.continue_sent = False
        head = self._head
        if head.chunked:
            done = self._read_chunked(head)
        else:
            done = self._read_sized(head)
        if done:
            self._head = None
            return head
        return None

    # -- head ---------------------------------------------------------------------------------
    def _parse_head(self) -> HttpRequest | None:
        buf = self._buf
        start = 0
        while buf[start:start + 2] == b"\r\n":  # RFC 9112 §2.2: ignore empty lines before a request
            start += 2
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            if len(buf) - start > self._max_head:
                raise ParseError(431, "The request head is too large.", "Request header fields too large")
            if start:
                del buf[:start]
            return None
        if end - start > self._max_head:
            raise ParseError(431, "The request head is too large.", "Request header fields too large")
        block = bytes(buf[start:end + 2])  # the request line and every field line, each ending in CRLF
        del buf[:end + 4]
        crlf = block.count(b"\r\n")
        if _CONTROL.search(block) or block.count(b"\r") != crlf or block.count(b"\n") != crlf:
            raise ParseError(400, "Control characters in the request head.", "Malformed request")
        eol = block.index(b"\r\n")
        method, target, version = _request_line(block[:eol])
        return self._framing(method, target, version, _header_fields(block.decode("latin-1"), eol + 2))

    def _framing(self, method: str, target: str, version: str, headers: list[tuple[str, str]]) -> HttpRequest:
        lengths: set[str] = set()
        codings: list[str] = []
        connection: set[str] = set()
        expect = False
        for name, value in headers:
            if name not in _FRAMING:
                continue
            if name == "content-length":
                lengths.add(value)
            elif name == "transfer-encoding":
                codings.append(value)
            elif name == "connection":
                connection.update(token.strip().lower() for token in value.split(","))
            else:
                expect = expect or value.lower() == "100-continue"
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        self._expect_continue = expect and version == "HTTP/1.1"
        if codings:
            if lengths or version != "HTTP/1.1":
                raise ParseError(400, "Transfer-Encoding and Content-Length together.",
                                 "Malformed request")
            # NOTE: codings split on commas, optional whitespace around each; "chun ked" is no coding
            # we know (a proxy that read it as none would frame what follows as another request).
            if [coding.strip(" \t").lower() for coding in ",".join(codings).split(",")] != ["chunked"]:
                raise ParseError(501, "Only the chunked transfer coding is supported.", "Not implemented")
            self._chunks, self._chunk_left, self._chunk_total, self._in_trailers = bytearray(), -1, 0, False
            self._trailer_bytes = 0
            return HttpRequest(method, target, version, headers, b"", None, keep_alive, chunked=True)
        length = None
        if lengths:
            if len(lengths) > 1 or not all(_DIGITS.match(v.encode()) for v in lengths):
                raise ParseError(400, "Content-Length must be one decimal number.", "Malformed request")
            length = int(lengths.pop())
        return HttpRequest(method, target, version, headers, b"", length, keep_alive)

    # -- bodies -------------------------------------------------------------------------------
    def _read_sized(self, head: HttpRequest) -> bool:
        length = head.content_length or 0
        if length > self._max_body:
            head.body, head.keep_alive = None, False
            self._buf.clear()
            return True
        if len(self._buf) < length:
            return False
        head.body = bytes(self._buf[:length])
        del self._buf[:length]
        return True

    def _read_chunked(self, head: HttpRequest) -> bool:
        buf = self._buf
        chunks = self._chunks
        assert chunks is not None
        while True:
            if self._in_trailers:
                return self._skip_trailers(head, chunks)
            if self._chunk_left < 0:
                eol = buf.find(b"\r\n", 0, _MAX_CHUNK_LINE)
                if eol < 0:
                    if len(buf) >= _MAX_CHUNK_LINE:
                        raise ParseError(400, "Malformed chunk size line.", "Malformed request")
                    return False
                line = bytes(buf[:eol])
                # NOTE: strict, so that no proxy in front reads the line another way: hex digits
                # first, whitespace only before an extension, and no bare LF or control byte anywhere.
                size_text = line.split(b";", 1)[0].rstrip(b" \t")
                if _BAD_VALUE.search(line) or not _HEX.match(size_text):
                    raise ParseError(400, "Malformed chunk size line.", "Malformed request")
                del buf[:eol + 2]
                size = int(size_text, 16)
                if size == 0:
                    self._in_trailers = True
                    continue
                self._chunk_total += size
                if self._chunk_total > self._max_body:
                    head.body, head.keep_alive, head.content_length = None, False, self._chunk_total
                    buf.clear()
                    return True
                self._chunk_left = size
            if len(buf) < self._chunk_left + 2:
                return False
            if buf[self._chunk_left:self._chunk_left + 2] != b"\r\n":
                raise ParseError(400, "A chunk must end with CRLF.", "Malformed request")
            chunks += buf[:self._chunk_left]
            del buf[:self._chunk_left + 2]
            self._chunk_left = -1

    def _skip_trailers(self, head: HttpRequest, chunks: bytearray) -> bool:
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > self._max_head:
                    raise ParseError(431, "The request trailers are too large.",
                                     "Request header fields too large")
                return False
            line = bytes(buf[:eol])
            del buf[:eol + 2]
            self._trailer_bytes += eol + 2
            if self._trailer_bytes > self._max_head:
                raise ParseError(431, "The request trailers are too large.",
                                 "Request header fields too large")
            if line and (_BAD_VALUE.search(line) or not _TOKEN.match(line.partition(b":")[0])
                         or b":" not in line):
                # NOTE: checked as strictly as header lines: bare LF, control bytes, folded lines.
                raise ParseError(400, "Malformed trailer line.", "Malformed request")
            if not line:
                head.body = bytes(chunks)
                head.content_length = len(chunks)
                self._chunks = None
                return True


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1] or _BAD_VALUE.search(parts[1]):
        raise ParseError(400, "Malformed request line.", "Malformed request")
    version = parts[2]
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise ParseError(505, "Only HTTP/1.0 and HTTP/1.1 are supported.", "HTTP version not supported")
        raise ParseError(400, "Malformed request line.", "Malformed request")
    return parts[0].decode("ascii"), parts[1].decode("latin-1"), version.decode("ascii")


def _header_fields(block: str, start: int) -> list[tuple[str, str]]:
    """Every field line of ``block`` from ``start``; all of them must be well formed.

    # PERF: one regex pass over the whole block (~3x faster than a loop over lines).
    """
    fields = _FIELD.findall(block, start)
    lines = block.count("\n", start)
    if len(fields) != lines:
        # NOTE: also obsolete line folding and "Name :", both smuggling vectors (RFC 9112 §5).
        raise ParseError(400, "Malformed header field.", "Malformed request")
    if lines > _MAX_HEADERS:
        raise ParseError(431, f"More than {_MAX_HEADERS} header fields.", "Request header fields too large")
    return [(name.lower(), value) for name, value in fields]
