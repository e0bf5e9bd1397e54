"""HTTP/1.1 messages from bytes, on llhttp (httptools): bytes in, message events out, no sockets.

The gateway faces the internet, and a proxy whose idea of where a message ends differs from its peer's
can be made to smuggle requests. So framing is never decided here by hand: llhttp (the parser Node.js
and uvicorn use) reads every byte, in its strict mode, and this module adds the checks a proxy needs on
top of it: one Host on HTTP/1.1, no framing header or Host named in `Connection`, a Transfer-Encoding
of exactly `chunked`, no body on a request that asks to switch protocols (llhttp would not read it),
no control characters in field values or reason phrases, a bounded head (a field still arriving
counts too), a request target in origin form. What passes comes out as small immutable heads and body
pieces; the gateway then writes its own framing on the other side (`tiffin.gateway.framing`), so no
framing byte a client or replica sent is ever forwarded as it came.

A reader is fed whatever arrives (`feed(data)`) and returns the events that data completed, in order:
a head, body pieces, the end of a message; pipelined requests simply follow. Anything malformed raises
`HttpError` with the status to answer and a sentence; the connection must then be closed, because the
reader's position in the stream can no longer be trusted.
"""

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httptools

MAX_HEAD_BYTES = 64 * 1024
_SLICE = 16 * 1024  # llhttp reads at most this much at a time, except a body of known length
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control characters (HTAB aside) in a field value
_TARGET = re.compile(rb"[\x21-\x7e]+")  # a request target is visible ASCII, percent-encoded beyond
_FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"host"})
_NO_BODY_STATUSES = frozenset({204, 304})


class HttpError(Exception):
    """A message the gateway refuses; `status` is what the peer gets back (a client), or 502 (a replica)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Framing(Enum):
    """How a message's body is delimited on the wire."""

    NONE = "none"  # no body at all
    LENGTH = "length"  # Content-Length bytes
    CHUNKED = "chunked"  # chunked transfer coding
    UNTIL_CLOSE = "until-close"  # (responses only) everything until the connection closes


Pairs = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Fields:
    """Header fields as received (names in their case, values without surrounding whitespace), and an
    index by lower-cased name (repeated fields joined with ", ", in order)."""

    pairs: Pairs
    index: dict[bytes, bytes]
    connection: frozenset[bytes] = frozenset()  # the Connection field's tokens, asked for most often

    @staticmethod
    def of(pairs: Pairs) -> "Fields":
        index: dict[bytes, bytes] = {}
        for name, value in pairs:
            key = name.lower()
            index[key] = value if key not in index else index[key] + b", " + value
        connection = index.get(b"connection")
        return Fields(pairs, index, _tokens(connection) if connection else frozenset())

    def get(self, name: bytes) -> bytes | None:
        """The value of field `name` (lower case); None when absent."""
        return self.index.get(name)

    def count(self, name: bytes) -> int:
        """How many times field `name` (lower case) was sent."""
        return sum(1 for key, _ in self.pairs if key.lower() == name) if name in self.index else 0

    def tokens(self, name: bytes) -> frozenset[bytes]:
        """The comma-separated, lower-cased tokens of a list field such as Connection."""
        if name == b"connection":
            return self.connection
        value = self.index.get(name)
        return _tokens(value) if value else frozenset()


def _tokens(value: bytes) -> frozenset[bytes]:
    return frozenset(t.strip().lower() for t in value.split(b","))


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes  # origin form (`/path?query`) or `*`
    minor: int  # HTTP/1.<minor>
    fields: Fields
    framing: Framing  # NONE, LENGTH or CHUNKED
    length: int  # the Content-Length (0 unless LENGTH)
    keep_alive: bool  # the client keeps the connection after this request
    upgrade: bytes | None  # the protocol asked for (`websocket`) when the request asks to switch
    expects_continue: bool  # `Expect: 100-continue`: the client waits before sending its body


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: bytes
    minor: int
    fields: Fields
    framing: Framing
    length: int
    keep_alive: bool  # the replica keeps the connection after this response


@dataclass(frozen=True, slots=True)
class Body:
    """A piece of the current message's body, already un-chunked."""

    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The current message is complete."""


@dataclass(frozen=True, slots=True)
class Upgraded:
    """The request switched protocols: `rest` is the first data of the new protocol (no more HTTP)."""

    rest: bytes


END = End()
RequestEvent = RequestHead | Body | End | Upgraded
ResponseEvent = ResponseHead | Body | End | Upgraded


class _Part(Enum):
    """Where llhttp is in the message it reads."""

    IDLE = "idle"  # between messages
    HEAD = "head"  # the start line and the header fields
    BODY = "body"  # the body; when chunked, a chunk-size line
    CHUNK = "chunk"  # a chunk's data, or the trailer fields after the last chunk


class _Collector:
    """llhttp's callbacks, one message at a time: the head's parts, then body pieces, then the end.

    httptools hands a header field over only once it is complete, and buffers it meanwhile by copying:
    a field trickled in for ever would grow without bound, at a cost quadratic in its size. So llhttp
    reads in slices, and a slice that completes nothing while a field section (the head, the trailers)
    is open counts towards the head's size, which is refused at the limit (`feed`)."""

    parser: httptools.HttpRequestParser | httptools.HttpResponseParser

    def __init__(self, max_head_bytes: int, who: str, too_large: int) -> None:
        self.events: list[Any] = []
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.max_head_bytes = max_head_bytes
        self.who = who  # the message, in a sentence: "The request"
        self.too_large = too_large  # the status that answers a head over the limit
        self.part = _Part.IDLE
        self.remaining = 0  # bytes of a Content-Length body still to come
        self.calls = 0  # callbacks so far: a slice that makes none only buffers (or skips) bytes
        self.stalled = 0  # bytes of slices in a row that made no callback inside a field section

    def feed(self, data: bytes) -> int | None:
        """Run llhttp over `data` (its errors propagate); where the new protocol starts in `data` when
        the message switched protocols, else None."""
        if len(data) <= _SLICE:
            return self._feed_slice(data, 0)  # the usual case: one slice
        view = memoryview(data)
        start = 0
        while start < len(data):
            size = self.remaining if self.part is _Part.BODY and self.remaining else _SLICE
            switched = self._feed_slice(view[start : start + size], start)
            if switched is not None:
                return switched
            start += size
        return None

    def _feed_slice(self, piece: bytes | memoryview, offset: int) -> int | None:
        calls = self.calls
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade as switch:
            return offset + int(switch.args[0])
        if self.calls != calls:
            self.stalled = 0
        elif self.part in (_Part.HEAD, _Part.CHUNK):  # a field still arriving: it counts
            self.stalled += len(piece)
            self._check_size(self.head_bytes + self.stalled)
        return None

    def _step(self, part: _Part | None = None) -> None:
        self.calls += 1
        if part is not None:
            self.part = part

    def on_message_begin(self) -> None:
        self.calls += 1
        self.part = _Part.HEAD
        self.url, self.fields, self.head_bytes, self.stalled = b"", [], 0, 0

    def on_url(self, url: bytes) -> None:
        self.calls += 1
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:  # the hot one: no calls it can do without
        self.calls += 1
        self.fields.append((name, value.rstrip(b" \t")))  # llhttp skips leading whitespace, not trailing
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head_bytes:
            self._check_size(self.head_bytes)

    def on_headers_complete(self) -> None:
        self.calls += 1
        self.part = _Part.BODY

    def on_chunk_header(self) -> None:
        self._step(_Part.CHUNK)

    def on_chunk_complete(self) -> None:
        self._step(_Part.BODY)

    def on_body(self, data: bytes) -> None:
        self.calls += 1
        self.remaining = max(0, self.remaining - len(data))
        self.events.append(Body(data))

    def on_message_complete(self) -> None:
        self.calls += 1
        self.part = _Part.IDLE
        self.events.append(END)

    def _count(self, size: int) -> None:
        self.head_bytes += size
        self._check_size(self.head_bytes)

    def _check_size(self, size: int) -> None:
        if size > self.max_head_bytes:
            limit = self.max_head_bytes
            what = "head" if self.part is _Part.HEAD else "head with its trailer fields"
            amount = f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
            raise HttpError(self.too_large, f"{self.who} {what} is larger than {amount}.")


class _RequestCollector(_Collector):
    parser: httptools.HttpRequestParser

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(max_head_bytes, "The request", 431)
        self.parser = httptools.HttpRequestParser(self)
        self.head: RequestHead | None = None

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.head = request_head(self.parser, self.url, tuple(self.fields))
        self.remaining = self.head.length
        self.events.append(self.head)


class RequestReader:
    """Requests from a client connection, one after another (pipelined ones included)."""

    def __init__(self, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._collector = _RequestCollector(max_head_bytes)

    def feed(self, data: bytes) -> list[RequestEvent]:
        """The events `data` completes; raises HttpError on anything malformed. After a WebSocket
        upgrade request, the rest of the stream comes out as `Upgraded`: it is not HTTP any more."""
        collector = self._collector
        events: list[RequestEvent] = []
        collector.events = events
        try:
            switched = collector.feed(data)
        except httptools.HttpParserError as error:
            raise _refusal(error, 400) from None
        if switched is not None:
            rest = data[switched:]
            head = collector.head
            if head is not None and head.upgrade == b"websocket":
                events.append(Upgraded(rest))
            else:  # `Upgrade: h2c` and the like: answered as HTTP/1.1, so the stream stays HTTP
                events += self.feed(rest) if rest else []
        return events


class _ResponseCollector(_Collector):
    parser: httptools.HttpResponseParser

    def __init__(self, max_head_bytes: int, method: bytes) -> None:
        super().__init__(max_head_bytes, "The replica's response", 502)
        self.parser = httptools.HttpResponseParser(self)
        self.method = method
        self.reason = b""
        self.head: ResponseHead | None = None
        self.interim = False  # the message being read is a 1xx answer other than 101
        self.done = False

    def on_message_begin(self) -> None:
        if self.done:
            raise HttpError(502, "The replica sent more than one response to one request.")
        super().on_message_begin()
        self.reason = b""

    def on_status(self, reason: bytes) -> None:
        self._step()
        self.reason += reason
        self._count(len(reason))

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        head = response_head(self.parser, self.reason, tuple(self.fields), self.method)
        self.interim = head.status < 200 and head.status != 101  # 100 Continue: not forwarded
        self.remaining = head.length
        if self.interim:
            return
        self.head = head
        self.events.append(head)
        if self.method == b"HEAD":
            self._complete()  # llhttp does not know the method: it would wait for a body

    def on_body(self, data: bytes) -> None:
        self._step()
        self.remaining = max(0, self.remaining - len(data))
        if not self.done:
            self.events.append(Body(data))

    def on_message_complete(self) -> None:
        self._step(_Part.IDLE)
        if not self.interim:
            self._complete()

    def _complete(self) -> None:
        if not self.done:
            self.done = True
            self.events.append(END)


class ResponseReader:
    """One response from a replica to a request with `method` (a fresh reader per exchange)."""

    def __init__(self, method: bytes, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._collector = _ResponseCollector(max_head_bytes, method)

    @property
    def head(self) -> ResponseHead | None:
        return self._collector.head

    @property
    def done(self) -> bool:
        return self._collector.done

    def feed(self, data: bytes) -> list[ResponseEvent]:
        """The events `data` completes; raises HttpError (502) when the replica breaks HTTP. After a 101
        answer, the rest of the stream comes out as `Upgraded`."""
        collector = self._collector
        events: list[ResponseEvent] = []
        collector.events = events
        try:
            switched = collector.feed(data)
        except httptools.HttpParserError as error:
            raise _refusal(error, 502) from None
        if switched is not None:
            events.append(Upgraded(data[switched:]))
        return events

    def eof(self) -> list[ResponseEvent]:
        """The replica closed the connection: the end of a body delimited by closing, else an error."""
        collector = self._collector
        if collector.done:
            return []
        head = collector.head
        if head is not None and head.framing is Framing.UNTIL_CLOSE:
            collector.done = True
            return [END]
        where = "before answering" if head is None else "in the middle of its response"
        raise HttpError(502, f"The replica closed the connection {where}.")


def request_head(
    parser: httptools.HttpRequestParser, url: bytes, pairs: tuple[tuple[bytes, bytes], ...]
) -> RequestHead:
    """The checked head of a request whose fields llhttp has just finished reading."""
    minor = _minor(parser.get_http_version(), 505)
    method = parser.get_method()
    fields = Fields.of(pairs)
    _check_fields(fields, minor)
    framing, length = _request_framing(fields)
    if method == b"CONNECT":
        raise HttpError(405, "CONNECT is not supported: send requests for the deployment's own paths.")
    switching = parser.should_upgrade()
    if switching and framing is not Framing.NONE:  # llhttp would take the body for the new protocol
        raise HttpError(400, "The request asks to switch protocols and has a body: send one or the other.")
    upgrade = fields.get(b"upgrade") if switching else None
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; close after it
    keep_alive = parser.should_keep_alive() and not (minor == 0 and framing is Framing.CHUNKED)
    return RequestHead(
        method=method,
        target=_origin_form(url, method),
        minor=minor,
        fields=fields,
        framing=framing,
        length=length,
        keep_alive=keep_alive,
        upgrade=upgrade.strip().lower() if upgrade else None,
        expects_continue=minor == 1 and b"100-continue" in fields.tokens(b"expect"),  # 1.0: ignored
    )


def response_head(
    parser: httptools.HttpResponseParser, reason: bytes, pairs: Pairs, method: bytes
) -> ResponseHead:
    """The checked head of a replica's response to a request with `method`."""
    minor = _minor(parser.get_http_version(), 502)
    status = parser.get_status_code()
    fields = Fields.of(pairs)
    if _CTL.search(b"".join(value for _, value in pairs)):
        raise HttpError(502, "The replica sent a header value with a control character.")
    if _CTL.search(reason):  # the reason phrase is passed on to the client
        raise HttpError(502, "The replica sent a reason phrase with a control character.")
    framing, length = _response_framing(fields, status, method)
    return ResponseHead(
        status=status,
        reason=reason,
        minor=minor,
        fields=fields,
        framing=framing,
        length=length,
        keep_alive=parser.should_keep_alive(),
    )


def _minor(version: str, status: int) -> int:
    if version == "1.1":
        return 1
    if version == "1.0":
        return 0
    raise HttpError(status, f"HTTP/{version} is not supported: send HTTP/1.1.")


def _check_fields(fields: Fields, minor: int) -> None:
    if _CTL.search(b"".join(value for _, value in fields.pairs)):
        raise HttpError(400, "A header value contains a control character: send printable text only.")
    hosts = fields.count(b"host")
    if minor == 1 and hosts != 1:
        what = "has no Host header" if hosts == 0 else "has more than one Host header"
        raise HttpError(400, f"The HTTP/1.1 request {what}: send exactly one.")
    if hosts > 1:
        raise HttpError(400, "The request has more than one Host header: send at most one.")
    named = fields.tokens(b"connection") & _FRAMING_FIELDS
    if named:
        listed = ", ".join(sorted(name.decode() for name in named))
        raise HttpError(400, f"The Connection header names {listed}, which must reach the server: remove it.")


def _request_framing(fields: Fields) -> tuple[Framing, int]:
    coding = fields.get(b"transfer-encoding")
    if coding is not None:
        if coding.strip().lower() != b"chunked":
            raise HttpError(
                400 if _final_coding(coding) != b"chunked" else 501,  # 501: a coding before chunked
                "The request's Transfer-Encoding must be exactly `chunked`.",
            )
        return Framing.CHUNKED, 0
    length = _content_length(fields, 400)
    return (Framing.LENGTH, length) if length else (Framing.NONE, 0)


def _response_framing(fields: Fields, status: int, method: bytes) -> tuple[Framing, int]:
    if method == b"HEAD" or status < 200 or status in _NO_BODY_STATUSES:
        return Framing.NONE, 0
    coding = fields.get(b"transfer-encoding")
    if coding is not None:  # as llhttp reads it: chunked when that is the final coding, else until close
        return (Framing.CHUNKED if _final_coding(coding) == b"chunked" else Framing.UNTIL_CLOSE), 0
    if fields.get(b"content-length") is None:
        return Framing.UNTIL_CLOSE, 0
    length = _content_length(fields, 502)
    return (Framing.LENGTH, length) if length else (Framing.NONE, 0)


def _final_coding(value: bytes) -> bytes:
    """The last transfer coding of a Transfer-Encoding value, lower-cased."""
    return value.rsplit(b",", 1)[-1].strip().lower()


def _content_length(fields: Fields, status: int) -> int:
    """llhttp has refused anything but one decimal number; an absent one means 0."""
    value = fields.get(b"content-length")
    if value is None:
        return 0
    if not value.isdigit():
        raise HttpError(status, "The Content-Length header is not one non-negative integer.")
    return int(value)


def _origin_form(url: bytes, method: bytes) -> bytes:
    """The target to send on: origin form, with absolute form (`http://h/p?q`) reduced to `/p?q`."""
    if not _TARGET.fullmatch(url):
        raise HttpError(400, "The request target must be printable ASCII without spaces.")
    if url.startswith(b"/"):
        return url
    if url == b"*" and method == b"OPTIONS":
        return url
    scheme, separator, rest = url.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        raise HttpError(400, "The request target must be a path starting with `/`.")
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    return path if path.startswith(b"/") else b"/" + path


def _refusal(error: httptools.HttpParserError, status: int) -> HttpError:
    """llhttp's complaint (or an HttpError a callback raised) as the answer to give."""
    cause = error.__context__
    if isinstance(cause, HttpError):
        return cause
    detail = str(error).strip().rstrip(".") or "malformed message"
    who = "The request" if status < 500 else "The replica's response"
    return HttpError(status, f"{who} is not valid HTTP/1.1: {detail}.")
