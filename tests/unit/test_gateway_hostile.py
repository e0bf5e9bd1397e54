"""Hostile HTTP/1.1 against the gateway's readers: bytes in, decisions out, no sockets.

Every case names an attack and the one outcome the gateway must reach: refused with a status and a
one-sentence message, or accepted with exactly these messages (each with its own body, pipelined ones
in order). The attacks are the review's list, PortSwigger's request-smuggling categories (CL.TE, TE.CL,
TE.TE obfuscations, duplicate or signed Content-Length, obs-fold, bare CR and LF, NUL), the 2025
chunk-extension bugs (h11 CVE-2025-43859, Go CVE-2025-22871, Kestrel CVE-2025-55315) and their mirrors
in replicas' responses. Each case is also fed split at every byte boundary and byte by byte: a decision
never depends on how the bytes arrive. An accepted message is then re-written the way the gateway
forwards it, and h11 and llhttp must each read back exactly that one message, framed by the gateway.
"""

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest

from tiffin.gateway import framing
from tiffin.gateway.parsing import (
    MAX_HEAD_BYTES,
    Body,
    End,
    Framing,
    HttpError,
    RequestHead,
    RequestReader,
    ResponseHead,
    ResponseReader,
    Upgraded,
)

Pairs = tuple[tuple[bytes, bytes], ...]
CLIENT = "10.0.0.1"  # the client address the gateway appends to X-Forwarded-For


# --- what a reader must report ---------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """A request as the reader must report it: its head, and its body whole however it came."""

    method: bytes
    target: bytes
    fields: Pairs
    body: bytes = b""
    framing: Framing = Framing.NONE
    minor: int = 1
    keep_alive: bool = True
    upgrade: bytes | None = None
    expects_continue: bool = False
    complete: bool = True  # its End came


@dataclass(frozen=True)
class Resp:
    """A response as the reader must report it."""

    status: int
    fields: Pairs
    body: bytes = b""
    framing: Framing = Framing.NONE
    reason: bytes = b"OK"
    minor: int = 1
    keep_alive: bool = True
    complete: bool = True


@dataclass(frozen=True)
class Accepted:
    messages: tuple[Req, ...] | tuple[Resp, ...]
    tunnel: bytes | None = None  # what follows a switch of protocols


@dataclass(frozen=True)
class Refused:
    status: int
    says: str = ""  # words the message contains


@dataclass(frozen=True)
class Case:
    attack: str
    data: bytes
    outcome: Accepted | Refused
    method: bytes = b"GET"  # (responses) the method of the request answered
    eof: bool = False  # (responses) the replica closes its connection after `data`


# --- reading, however the bytes are cut --------------------------------------------------------------


@dataclass
class Message:
    head: RequestHead | ResponseHead
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False


@dataclass
class Read:
    messages: list[Message] = field(default_factory=list)
    tunnel: bytes | None = None

    def take(self, events: Iterable[object]) -> None:
        for event in events:
            if isinstance(event, RequestHead | ResponseHead):
                self.messages.append(Message(event))
            elif isinstance(event, Body):
                self.messages[-1].body += event.data
            elif isinstance(event, End):
                self.messages[-1].complete = True
            elif isinstance(event, Upgraded):
                self.tunnel = event.rest

    def requests(self) -> tuple[Req, ...]:
        return tuple(_as_request(message) for message in self.messages)

    def responses(self) -> tuple[Resp, ...]:
        return tuple(_as_response(message) for message in self.messages)


def _as_request(message: Message) -> Req:
    head = message.head
    assert isinstance(head, RequestHead)
    if head.framing is Framing.LENGTH and message.complete:
        assert head.length == len(message.body)
    return Req(
        head.method,
        head.target,
        head.fields.pairs,
        bytes(message.body),
        head.framing,
        head.minor,
        head.keep_alive,
        head.upgrade,
        head.expects_continue,
        message.complete,
    )


def _as_response(message: Message) -> Resp:
    head = message.head
    assert isinstance(head, ResponseHead)
    if head.framing is Framing.LENGTH and message.complete:
        assert head.length == len(message.body)
    return Resp(
        head.status,
        head.fields.pairs,
        bytes(message.body),
        head.framing,
        head.reason,
        head.minor,
        head.keep_alive,
        message.complete,
    )


def read_requests(pieces: Iterable[bytes], max_head_bytes: int = MAX_HEAD_BYTES) -> Read | HttpError:
    """What a client connection makes of `pieces`: after a switch of protocols, bytes are the tunnel's."""
    reader, result = RequestReader(max_head_bytes), Read()
    try:
        for piece in pieces:
            if result.tunnel is not None:
                result.tunnel += piece
            else:
                result.take(reader.feed(piece))
    except HttpError as error:
        return error
    return result


def read_response(pieces: Iterable[bytes], method: bytes, eof: bool) -> Read | HttpError:
    reader, result = ResponseReader(method), Read()
    try:
        for piece in pieces:
            if result.tunnel is not None:
                result.tunnel += piece
            else:
                result.take(reader.feed(piece))
        if eof and result.tunnel is None:
            result.take(reader.eof())
    except HttpError as error:
        return error
    return result


def splits(data: bytes) -> Iterator[Iterable[bytes]]:
    """`data` whole, cut in two at every byte boundary (at 64 places when it is long), byte by byte."""
    yield [data]
    step = 1 if len(data) <= 4096 else len(data) // 64
    for cut in range(1, len(data), step):
        yield [data[:cut], data[cut:]]
    yield (data[i : i + 1] for i in range(len(data)))


ONE_SENTENCE = re.compile(r"[A-Z][^\r\n]*[^.\s]\.")


def check(case: Case, result: Read | HttpError, responses: bool = False) -> None:
    if isinstance(case.outcome, Refused):
        assert isinstance(result, HttpError), f"{case.attack}: accepted"
        assert result.status == case.outcome.status, f"{case.attack}: {result.status} {result.message}"
        assert ONE_SENTENCE.fullmatch(result.message) and ". " not in result.message, result.message
        assert case.outcome.says in result.message
        return
    assert not isinstance(result, HttpError), f"{case.attack}: refused: {result.message}"
    got = result.responses() if responses else result.requests()
    assert got == case.outcome.messages, case.attack
    assert result.tunnel == case.outcome.tunnel, case.attack


# --- the corpus: requests ------------------------------------------------------------------------------

HOST = ((b"Host", b"h"),)
SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: h\r\n\r\n"
WEBSOCKET = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
WEBSOCKET_FIELDS = (
    (b"Connection", b"Upgrade"),
    (b"Upgrade", b"websocket"),
    (b"Sec-WebSocket-Version", b"13"),
)
H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
H2C_FIELDS = (
    (b"Connection", b"Upgrade, HTTP2-Settings"),
    (b"Upgrade", b"h2c"),
    (b"HTTP2-Settings", b"AAMAAABkAAQCAAAAAAIAAAAA"),
)


def get(target: bytes = b"/", fields: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\nHost: h\r\n" + fields + b"\r\n"


def post(fields: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n" + body


def sized(body: bytes) -> bytes:
    return post(b"Content-Length: %d\r\n" % len(body), body)


def chunked(body: bytes, fields: bytes = b"") -> bytes:
    """A POST whose raw chunked body is `body`."""
    return post(b"Transfer-Encoding: chunked\r\n" + fields, body)


def got(target: bytes = b"/", fields: Pairs = (), **more: Any) -> Req:
    return Req(b"GET", target, HOST + fields, **more)


def posted(body: bytes, fields: Pairs = (), **more: Any) -> Req:
    return Req(b"POST", b"/", HOST + fields, body, **more)


def posted_sized(body: bytes) -> Req:
    return posted(body, ((b"Content-Length", b"%d" % len(body)),), framing=Framing.LENGTH)


def posted_chunked(body: bytes, fields: Pairs = ()) -> Req:
    return posted(body, ((b"Transfer-Encoding", b"chunked"), *fields), framing=Framing.CHUNKED)


def ok(*messages: Req, tunnel: bytes | None = None) -> Accepted:
    return Accepted(messages, tunnel)


BAD = Refused(400)

ACCEPTED_REQUESTS = [
    Case("a plain GET", get(), ok(got())),
    Case("a POST framed by Content-Length", sized(b"hello"), ok(posted_sized(b"hello"))),
    Case(
        "a chunked POST with a chunk extension and a trailer comes out un-chunked",
        chunked(b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        ok(posted_chunked(b"hello world")),
    ),
    Case(
        "pipelined requests keep their own bodies, in order",
        sized(b"hello") + sized(b"abc") + get(b"/third"),
        ok(posted_sized(b"hello"), posted_sized(b"abc"), got(b"/third")),
    ),
    Case(
        "CL.0: what follows a Content-Length: 0 POST is the next request, as framed",
        post(b"Content-Length: 0\r\n") + SMUGGLED,
        ok(posted(b"", ((b"Content-Length", b"0"),)), Req(b"GET", b"/admin", HOST)),
    ),
    Case(
        "a whole request inside a Content-Length body stays body",
        sized(SMUGGLED),
        ok(posted_sized(SMUGGLED)),
    ),
    Case(
        "a whole request inside a chunked body stays body",
        chunked(b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
        ok(posted_chunked(SMUGGLED)),
    ),
    Case(
        "a chunked request and a pipelined one after it",
        chunked(b"5\r\nhello\r\n0\r\n\r\n") + get(b"/next"),
        ok(posted_chunked(b"hello"), got(b"/next")),
    ),
    Case("absolute-form keeps its query", get(b"http://h?x=1"), ok(got(b"/?x=1"))),
    Case(
        "absolute-form with a port, a path and a query",
        get(b"http://h:8080/p/q?x=1&y=2"),
        ok(got(b"/p/q?x=1&y=2")),
    ),
    Case("absolute-form with an upper-case https scheme", get(b"HTTPS://h/p"), ok(got(b"/p"))),
    Case("absolute-form with userinfo", get(b"http://u@h/p"), ok(got(b"/p"))),
    Case("absolute-form without a path", get(b"http://h"), ok(got(b"/"))),
    Case(
        "OPTIONS * keeps its asterisk",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ok(Req(b"OPTIONS", b"*", HOST)),
    ),
    Case(
        "HTTP/1.0 without Host is closed after its answer",
        b"GET / HTTP/1.0\r\n\r\n",
        ok(Req(b"GET", b"/", (), minor=0, keep_alive=False)),
    ),
    Case(
        "HTTP/1.0 asking for keep-alive stays open",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        ok(Req(b"GET", b"/", ((b"Connection", b"keep-alive"),), minor=0)),
    ),
    Case(
        "HTTP/1.0 with Transfer-Encoding is closed after its answer (RFC 9112, 6.1)",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        ok(
            Req(
                b"POST",
                b"/",
                ((b"Transfer-Encoding", b"chunked"), (b"Connection", b"keep-alive")),
                b"hello",
                Framing.CHUNKED,
                minor=0,
                keep_alive=False,
            )
        ),
    ),
    Case(
        "Connection: close",
        get(fields=b"Connection: close\r\n"),
        ok(got(fields=((b"Connection", b"close"),), keep_alive=False)),
    ),
    Case(
        "Connection naming a private field (the gateway drops it)",
        get(fields=b"Connection: X-Private\r\nX-Private: secret\r\n"),
        ok(got(fields=((b"Connection", b"X-Private"), (b"X-Private", b"secret")))),
    ),
    Case(
        "Connection naming X-Forwarded-For (the client's value stops at the gateway)",
        get(fields=b"Connection: x-forwarded-for\r\nX-Forwarded-For: 6.6.6.6\r\n"),
        ok(got(fields=((b"Connection", b"x-forwarded-for"), (b"X-Forwarded-For", b"6.6.6.6")))),
    ),
    Case(
        "whitespace after a value is not part of it, Content-Length included",
        post(b"Content-Length: 5 \r\nX-Padded: a \t\r\n", b"hello"),
        ok(posted(b"hello", ((b"Content-Length", b"5"), (b"X-Padded", b"a")), framing=Framing.LENGTH)),
    ),
    Case(
        "obs-text and HTAB inside a value pass",
        get(fields=b"X-Text: caf\xc3\xa9\tok\r\n"),
        ok(got(fields=((b"X-Text", b"caf\xc3\xa9\tok"),))),
    ),
    Case("empty lines before the request line are skipped (RFC 9112, 2.2)", b"\r\n\r\n" + get(), ok(got())),
    Case(
        "several spaces between the request line's parts (the gateway writes its own line)",
        b"GET  /p  HTTP/1.1\r\nHost: h\r\n\r\n",
        ok(got(b"/p")),
    ),
    Case(
        "a WebSocket upgrade: what follows is the new protocol",
        get(fields=WEBSOCKET) + b"\x81\x05hello",
        ok(got(fields=WEBSOCKET_FIELDS, upgrade=b"websocket"), tunnel=b"\x81\x05hello"),
    ),
    Case(
        "an h2c upgrade without a body is answered in HTTP/1.1: a pipelined request after it stays HTTP",
        get(fields=H2C) + get(b"/next"),
        ok(got(fields=H2C_FIELDS, upgrade=b"h2c"), got(b"/next")),
    ),
    Case(
        "Expect: 100-continue",
        post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello"),
        ok(
            posted(
                b"hello",
                ((b"Expect", b"100-continue"), (b"Content-Length", b"5")),
                framing=Framing.LENGTH,
                expects_continue=True,
            )
        ),
    ),
    Case(
        "Expect: 100-continue in HTTP/1.0 is ignored (RFC 9110, 10.1.1)",
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        ok(
            Req(
                b"POST",
                b"/",
                ((b"Expect", b"100-continue"), (b"Content-Length", b"2")),
                b"hi",
                Framing.LENGTH,
                minor=0,
                keep_alive=False,
            )
        ),
    ),
    Case(
        "chunk sizes in upper-case hex with leading zeros",
        chunked(b"000A\r\n0123456789\r\n0\r\n\r\n"),
        ok(posted_chunked(b"0123456789")),
    ),
    Case(
        "a chunk size of 21+ digits, all leading zeros (llhttp reads the exact value)",
        chunked(b"0" * 30 + b"5\r\nhello\r\n0\r\n\r\n"),
        ok(posted_chunked(b"hello")),
    ),
    Case(
        "Transfer-Encoding: CHUNKED (codings are case-insensitive)",
        post(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ok(posted(b"hello", ((b"Transfer-Encoding", b"CHUNKED"),), framing=Framing.CHUNKED)),
    ),
    Case(
        "Transfer-Encoding after a tab",
        post(b"Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ok(posted_chunked(b"hello")),
    ),
    Case(
        "a quoted chunk extension with an escaped quote",
        chunked(b'5;a="b\\"c"\r\nhello\r\n0\r\n\r\n'),
        ok(posted_chunked(b"hello")),
    ),
    Case(
        "a GET with a Content-Length body",
        get(fields=b"Content-Length: 3\r\n") + b"abc",
        ok(got(fields=((b"Content-Length", b"3"),), body=b"abc", framing=Framing.LENGTH)),
    ),
    Case(
        "an empty Host on HTTP/1.1 (a target without authority)",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        ok(Req(b"GET", b"/", ((b"Host", b""),))),
    ),
    Case(
        "leading zeros in Content-Length",
        post(b"Content-Length: 005\r\n", b"hello"),
        ok(posted(b"hello", ((b"Content-Length", b"005"),), framing=Framing.LENGTH)),
    ),
    Case(
        "DELETE with Content-Length: 0",
        b"DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        ok(Req(b"DELETE", b"/x", (*HOST, (b"Content-Length", b"0")))),
    ),
    Case(
        "a Content-Length body cut short is not complete",
        post(b"Content-Length: 10\r\n", b"hello"),
        ok(posted(b"hello", ((b"Content-Length", b"10"),), framing=Framing.LENGTH, complete=False)),
    ),
    Case(
        "a head just under 64 KiB",
        get(fields=b"X-Big: " + b"a" * 60_000 + b"\r\n"),
        ok(got(fields=((b"X-Big", b"a" * 60_000),))),
    ),
    Case(
        "a 100 KB body without a line feed, then a pipelined request",
        sized(b"x" * 100_000) + get(b"/next"),
        ok(posted_sized(b"x" * 100_000), got(b"/next")),
    ),
]

REFUSED_REQUESTS = [
    # CL.TE and TE.CL: a message framed two ways
    Case("CL.TE", post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"), BAD),
    Case(
        "TE.CL",
        post(
            b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"
        ),
        BAD,
    ),
    # Content-Length that two parsers could read differently
    Case("two different Content-Length", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), BAD),
    Case("two equal Content-Length", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), BAD),
    Case("a Content-Length list", post(b"Content-Length: 5, 5\r\n", b"hello"), BAD),
    Case("Content-Length: +5", post(b"Content-Length: +5\r\n", b"hello"), BAD),
    Case("Content-Length: -1", post(b"Content-Length: -1\r\n"), BAD),
    Case("Content-Length in hex", post(b"Content-Length: 0x5\r\n", b"hello"), BAD),
    Case("Content-Length with a space inside", post(b"Content-Length: 5 5\r\n", b"hello"), BAD),
    Case("an empty Content-Length", post(b"Content-Length:\r\n"), BAD),
    Case("Content-Length overflow", post(b"Content-Length: 99999999999999999999999\r\n", b"hello"), BAD),
    Case("Content-Length after a vertical tab", post(b"Content-Length:\x0b5\r\n", b"hello"), BAD),
    # TE.TE: Transfer-Encoding obfuscated so that one parser ignores it
    Case("Transfer-Encoding: xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), BAD),
    Case("Transfer-Encoding: chunked, identity", post(b"Transfer-Encoding: chunked, identity\r\n"), BAD),
    Case("Transfer-Encoding: identity", post(b"Transfer-Encoding: identity\r\n"), BAD),
    Case(
        "Transfer-Encoding: gzip, chunked (a coding the gateway does not decode)",
        post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
        Refused(501, "exactly `chunked`"),
    ),
    Case("Transfer-Encoding: chunked, chunked", post(b"Transfer-Encoding: chunked, chunked\r\n"), BAD),
    Case(
        "two Transfer-Encoding fields",
        post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        BAD,
    ),
    Case(
        "Transfer-Encoding: chunked, then Transfer-Encoding: x",
        post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"0\r\n\r\n"),
        BAD,
    ),
    Case(
        "a space before the colon of Transfer-Encoding",
        post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
        BAD,
    ),
    Case("Transfer-Encoding quoted", post(b'Transfer-Encoding: "chunked"\r\n', b"0\r\n\r\n"), BAD),
    Case("Transfer-Encoding after a vertical tab", post(b"Transfer-Encoding:\x0bchunked\r\n"), BAD),
    Case("Transfer-Encoding before a vertical tab", post(b"Transfer-Encoding: chunked\x0b\r\n"), BAD),
    Case(
        "Transfer-Encoding folded onto a second line (obs-fold)",
        post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
        BAD,
    ),
    Case(
        "Transfer-Encoding hidden behind a bare LF",
        post(b"X-Hide: y\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        BAD,
    ),
    Case("an empty Transfer-Encoding", post(b"Transfer-Encoding: \r\n"), BAD),
    Case("Transfer-Encoding: chunked,", post(b"Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n"), BAD),
    Case(
        "Transfer-Encoding indented as the first field",
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: h\r\n\r\n0\r\n\r\n",
        BAD,
    ),
    Case(
        "Transfer_Encoding (not a framing field: its chunked body is garbage)",
        post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n"),
        BAD,
    ),
    # the review: Connection naming a field the server must see
    Case(
        "Connection naming Content-Length",
        post(b"Connection: content-length\r\nContent-Length: 5\r\n", b"hello"),
        Refused(400, "content-length"),
    ),
    Case(
        "Connection naming Transfer-Encoding",
        post(b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        Refused(400, "transfer-encoding"),
    ),
    Case("Connection naming Host", get(fields=b"Connection: host\r\n"), Refused(400, "host")),
    Case(
        "Connection: close, Content-Length",
        post(b"Connection: close, Content-Length\r\nContent-Length: 5\r\n", b"hello"),
        Refused(400, "content-length"),
    ),
    # field syntax
    Case("obs-fold", get(fields=b"X-Folded: a\r\n b\r\n"), BAD),
    Case("bare LF line ends", b"GET / HTTP/1.1\nHost: h\n\n", BAD),
    Case("bare CR line ends", b"GET / HTTP/1.1\rHost: h\r\r", BAD),
    Case("a bare CR inside a value", get(fields=b"X-CR: a\rb\r\n"), BAD),
    Case("NUL in a value", get(fields=b"X-Nul: a\x00b\r\n"), BAD),
    Case("NUL in a name", get(fields=b"X\x00Nul: a\r\n"), BAD),
    Case("a control character in a value", get(fields=b"X-Ctl: a\x01b\r\n"), BAD),
    Case("DEL in a value", get(fields=b"X-Del: a\x7fb\r\n"), BAD),
    Case("ESC in a value", get(fields=b"X-Esc: \x1b[31m\r\n"), BAD),
    Case("a form feed in a value", get(fields=b"X-Ff: a\x0cb\r\n"), BAD),
    Case("a control character in Host", b"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n", BAD),
    Case("a space before a colon", get(fields=b"X-Space : a\r\n"), BAD),
    Case("an empty field name", get(fields=b": a\r\n"), BAD),
    Case("UTF-8 in a field name", get(fields=b"X-\xc3\xa9: a\r\n"), BAD),
    # the review: Host
    Case("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", Refused(400, "no Host")),
    Case(
        "two Host fields", b"GET / HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n", Refused(400, "more than one")
    ),
    Case("two Host fields, cased apart", b"GET / HTTP/1.1\r\nHost: h\r\nhOST: evil\r\n\r\n", BAD),
    Case("HTTP/1.0 with two Host fields", b"GET / HTTP/1.0\r\nHost: h\r\nHost: evil\r\n\r\n", BAD),
    # chunk-size lines and extensions (the 2025 CVEs: each read a bare LF or a missing CRLF as a line end)
    Case("a space before a chunk size", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a tab before a chunk size", chunked(b"\t5\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a space after a chunk size", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), BAD),
    Case("whitespace before a chunk extension", chunked(b"5 ;a=b\r\nhello\r\n0\r\n\r\n"), BAD),
    Case(
        "a bare LF inside a chunk extension (Kestrel CVE-2025-55315)",
        chunked(b"2;\nxx\r\n45\r\n0\r\n\r\n" + SMUGGLED),
        BAD,
    ),
    Case(
        "a bare LF ending a chunk extension (Go CVE-2025-22871)",
        chunked(b"5;ext\nhello\r\n0\r\n\r\n"),
        BAD,
    ),
    Case("a bare LF ending a chunk size", chunked(b"5\nhello\r\n0\r\n\r\n"), BAD),
    Case("a bare CR in a chunk extension", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), BAD),
    Case(
        "chunk data not followed by CRLF (h11 CVE-2025-43859)",
        chunked(b"5\r\nhelloXX0\r\n\r\n"),
        BAD,
    ),
    Case("chunk data followed by a bare LF", chunked(b"5\r\nhello\n0\r\n\r\n"), BAD),
    Case("NUL in a chunk extension", chunked(b"5;a\x00b\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a control character in a chunk extension value", chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a chunk extension without a name", chunked(b"5;\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a LF inside a quoted chunk extension", chunked(b'5;a="b\nc"\r\nhello\r\n0\r\n\r\n'), BAD),
    Case("a chunk size over 64 bits", chunked(b"1FFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a chunk size in 0x notation", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("a negative chunk size", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("an empty chunk size", chunked(b"\r\nhello\r\n0\r\n\r\n"), BAD),
    Case("bare LFs after the last chunk", chunked(b"5\r\nhello\r\n0\n\n"), BAD),
    Case("Content-Length in a trailer", chunked(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), BAD),
    Case("a control character in a trailer", chunked(b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n"), BAD),
    # request lines
    Case("HTTP/2.0 in an HTTP/1 request line", get(version=b"HTTP/2.0"), Refused(505, "HTTP/2.0")),
    Case("no version (HTTP/0.9)", b"GET /\r\n\r\n", Refused(505)),
    Case("HTTP/1.2", get(version=b"HTTP/1.2"), BAD),
    Case("a lower-case version", get(version=b"http/1.1"), BAD),
    Case("a lower-case method", b"get / HTTP/1.1\r\nHost: h\r\n\r\n", BAD),
    Case("an unknown method", b"FOO / HTTP/1.1\r\nHost: h\r\n\r\n", BAD),
    Case("CONNECT", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", Refused(405, "CONNECT")),
    Case("an asterisk for GET", get(b"*"), Refused(400, "starting with `/`")),
    Case("authority-form for GET", get(b"h:80"), BAD),
    Case("a relative target", get(b"p"), BAD),
    Case("an ftp absolute-form", get(b"ftp://h/p"), Refused(400, "starting with `/`")),
    Case("a space inside the target", get(b"/a b"), BAD),
    Case("a control character in the target", get(b"/a\x01"), BAD),
    Case("a byte over 0x7f in the target", get(b"/caf\xc3\xa9"), BAD),
    Case("a tab between method and target", b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", BAD),
    Case("a space after the version", b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", BAD),
    Case("a space before the method", b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", BAD),
    Case("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", BAD),
    Case("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", BAD),
    Case("NUL before the request", b"\x00" + get(), BAD),
    # switching protocols with a body: llhttp would hand the body to the new protocol
    Case(
        "an h2c upgrade whose Content-Length body is a request",
        post(H2C + b"Content-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        Refused(400, "switch protocols"),
    ),
    Case(
        "an h2c upgrade with a chunked body",
        post(H2C + b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
        Refused(400, "switch protocols"),
    ),
    Case(
        "a WebSocket upgrade with a body",
        post(WEBSOCKET + b"Content-Length: 5\r\n", b"hello"),
        Refused(400, "switch protocols"),
    ),
    # the review: a bounded head, however slowly it comes
    Case(
        "a head over 64 KiB in many fields",
        get(fields=b"".join(b"X-%05d: %s\r\n" % (i, b"v" * 20) for i in range(3000))),
        Refused(431, "larger than 64 KiB"),
    ),
    Case(
        "a field value that never ends",
        get().removesuffix(b"\r\n") + b"X-Endless: " + b"a" * 1_000_000,
        Refused(431, "larger than 64 KiB"),
    ),
    Case(
        "a field name that never ends",
        get().removesuffix(b"\r\n") + b"X" * 1_000_000,
        Refused(431, "larger than 64 KiB"),
    ),
    Case("a target over 64 KiB", get(b"/" + b"a" * 70_000), Refused(431, "larger than 64 KiB")),
    Case(
        "a trailer that never ends",
        chunked(b"5\r\nhello\r\n0\r\nX-Trailer: " + b"a" * 200_000),
        Refused(431, "trailer"),
    ),
    Case(
        "a valid request, then CL.TE",
        get() + post(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
        BAD,
    ),
]

REQUESTS = ACCEPTED_REQUESTS + REFUSED_REQUESTS


# --- the corpus: responses (the mirror cases) -------------------------------------------------------

OK_LINE = b"HTTP/1.1 200 OK\r\n"
BAD_GATEWAY = Refused(502)


def response(fields: bytes, body: bytes = b"", status: bytes = OK_LINE) -> bytes:
    return status + fields + b"\r\n" + body


def answered(*messages: Resp, tunnel: bytes | None = None) -> Accepted:
    return Accepted(messages, tunnel)


RESPONSES = [
    Case(
        "a response framed by Content-Length",
        response(b"Content-Length: 5\r\n", b"hello"),
        answered(Resp(200, ((b"Content-Length", b"5"),), b"hello", Framing.LENGTH)),
    ),
    Case(
        "a chunked response with an extension and a trailer",
        response(b"Transfer-Encoding: chunked\r\n", b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        answered(Resp(200, ((b"Transfer-Encoding", b"chunked"),), b"hello", Framing.CHUNKED)),
    ),
    Case(
        "a response delimited by closing",
        response(b"Content-Type: text/plain\r\n", b"until the end"),
        answered(
            Resp(
                200,
                ((b"Content-Type", b"text/plain"),),
                b"until the end",
                Framing.UNTIL_CLOSE,
                keep_alive=False,
            )
        ),
        eof=True,
    ),
    Case(
        "an HTTP/1.0 response delimited by closing",
        b"HTTP/1.0 200 OK\r\n\r\nold",
        answered(Resp(200, (), b"old", Framing.UNTIL_CLOSE, minor=0, keep_alive=False)),
        eof=True,
    ),
    Case(
        "204 has no body",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        answered(Resp(204, (), reason=b"No Content")),
    ),
    Case(
        "304 with Transfer-Encoding has no body",
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        answered(Resp(304, ((b"Transfer-Encoding", b"chunked"),), reason=b"Not Modified")),
    ),
    Case(
        "a HEAD response ends with its head, whatever its Content-Length says",
        response(b"Content-Length: 5\r\n"),
        answered(Resp(200, ((b"Content-Length", b"5"),))),
        method=b"HEAD",
    ),
    Case(
        "100 Continue is not passed on",
        b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"Content-Length: 2\r\n", b"ok"),
        answered(Resp(200, ((b"Content-Length", b"2"),), b"ok", Framing.LENGTH)),
    ),
    Case(
        "103 Early Hints is not passed on",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + response(b"Content-Length: 2\r\n", b"ok"),
        answered(Resp(200, ((b"Content-Length", b"2"),), b"ok", Framing.LENGTH)),
    ),
    Case(
        "101: what follows is the new protocol",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
        answered(
            Resp(
                101,
                ((b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")),
                reason=b"Switching Protocols",
            ),
            tunnel=b"\x81\x02hi",
        ),
    ),
    Case(
        "whitespace after a value is not part of it, Content-Length included",
        response(b"Content-Length: 2 \r\nX-Padded: a \r\n", b"ok"),
        answered(Resp(200, ((b"Content-Length", b"2"), (b"X-Padded", b"a")), b"ok", Framing.LENGTH)),
    ),
    Case(
        "Transfer-Encoding: gzip, chunked is chunked (the final coding)",
        response(b"Transfer-Encoding: gzip, chunked\r\n", b"2\r\nok\r\n0\r\n\r\n"),
        answered(Resp(200, ((b"Transfer-Encoding", b"gzip, chunked"),), b"ok", Framing.CHUNKED)),
    ),
    Case(
        "Transfer-Encoding: chunked, gzip is delimited by closing",
        response(b"Transfer-Encoding: chunked, gzip\r\n", b"raw"),
        answered(
            Resp(
                200,
                ((b"Transfer-Encoding", b"chunked, gzip"),),
                b"raw",
                Framing.UNTIL_CLOSE,
                keep_alive=False,
            )
        ),
        eof=True,
    ),
    Case(
        "Transfer-Encoding: xchunked is not chunked: delimited by closing, as llhttp reads it",
        response(b"Transfer-Encoding: xchunked\r\n", b"raw"),
        answered(
            Resp(200, ((b"Transfer-Encoding", b"xchunked"),), b"raw", Framing.UNTIL_CLOSE, keep_alive=False)
        ),
        eof=True,
    ),
    Case(
        "no reason phrase",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        answered(Resp(200, ((b"Content-Length", b"0"),), reason=b"")),
    ),
    Case(
        "Connection naming Content-Length (the gateway frames the body itself)",
        response(b"Connection: content-length\r\nContent-Length: 2\r\n", b"ok"),
        answered(
            Resp(200, ((b"Connection", b"content-length"), (b"Content-Length", b"2")), b"ok", Framing.LENGTH)
        ),
    ),
    Case(
        "Connection: close",
        response(b"Connection: close\r\nContent-Length: 2\r\n", b"ok"),
        answered(
            Resp(
                200,
                ((b"Connection", b"close"), (b"Content-Length", b"2")),
                b"ok",
                Framing.LENGTH,
                keep_alive=False,
            )
        ),
    ),
    Case(
        "Content-Length and Transfer-Encoding",
        response(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        BAD_GATEWAY,
    ),
    Case(
        "Transfer-Encoding and Content-Length",
        response(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
        BAD_GATEWAY,
    ),
    Case("two Content-Length", response(b"Content-Length: 2\r\nContent-Length: 2\r\n", b"ok"), BAD_GATEWAY),
    Case("Content-Length: +2", response(b"Content-Length: +2\r\n", b"ok"), BAD_GATEWAY),
    Case("obs-fold", response(b"X-Folded: a\r\n b\r\nContent-Length: 0\r\n"), BAD_GATEWAY),
    Case("bare LF line ends", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", BAD_GATEWAY),
    Case("NUL in a value", response(b"X-Nul: a\x00b\r\nContent-Length: 0\r\n"), BAD_GATEWAY),
    Case("a control character in a value", response(b"X-Ctl: a\x01b\r\nContent-Length: 0\r\n"), BAD_GATEWAY),
    Case(
        "a control character in the reason phrase (it reaches the client)",
        b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
        Refused(502, "reason phrase"),
    ),
    Case("NUL in the reason phrase", b"HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n", BAD_GATEWAY),
    Case(
        "a bare LF inside a chunk extension",
        response(b"Transfer-Encoding: chunked\r\n", b"2;a\nb\r\nok\r\n0\r\n\r\n"),
        BAD_GATEWAY,
    ),
    Case(
        "a space before a chunk size",
        response(b"Transfer-Encoding: chunked\r\n", b" 2\r\nok\r\n0\r\n\r\n"),
        BAD_GATEWAY,
    ),
    Case(
        "chunk data not followed by CRLF",
        response(b"Transfer-Encoding: chunked\r\n", b"2\r\nokXX0\r\n\r\n"),
        BAD_GATEWAY,
    ),
    Case(
        "a chunk size over 64 bits",
        response(b"Transfer-Encoding: chunked\r\n", b"1FFFFFFFFFFFFFFFF\r\nok"),
        BAD_GATEWAY,
    ),
    Case(
        "two responses to one request",
        response(b"Content-Length: 2\r\n", b"ok") + response(b"Content-Length: 2\r\n", b"ok"),
        Refused(502, "more than one response"),
    ),
    Case(
        "204 with a body (the body reads as a second response)",
        response(b"Content-Length: 5\r\n", b"hello", status=b"HTTP/1.1 204 No Content\r\n"),
        Refused(502, "more than one response"),
    ),
    Case("HTTP/2.0", response(b"Content-Length: 0\r\n", status=b"HTTP/2.0 200 OK\r\n"), BAD_GATEWAY),
    Case("HTTP/1.2", response(b"Content-Length: 0\r\n", status=b"HTTP/1.2 200 OK\r\n"), BAD_GATEWAY),
    Case(
        "a four-digit status", response(b"Content-Length: 0\r\n", status=b"HTTP/1.1 1000 OK\r\n"), BAD_GATEWAY
    ),
    Case("a two-digit status", response(b"Content-Length: 0\r\n", status=b"HTTP/1.1 20 OK\r\n"), BAD_GATEWAY),
    Case(
        "closed in the middle of a Content-Length body",
        response(b"Content-Length: 5\r\n", b"hel"),
        Refused(502, "in the middle"),
        eof=True,
    ),
    Case(
        "closed in the middle of a chunked body",
        response(b"Transfer-Encoding: chunked\r\n", b"5\r\nhel"),
        Refused(502, "in the middle"),
        eof=True,
    ),
    Case("closed before answering", b"", Refused(502, "before answering"), eof=True),
    Case(
        "a head over 64 KiB",
        response(b"".join(b"X-%05d: %s\r\n" % (i, b"v" * 20) for i in range(3000))),
        Refused(502, "larger than 64 KiB"),
    ),
    Case(
        "a field value that never ends",
        OK_LINE + b"X-Endless: " + b"a" * 300_000,
        Refused(502, "larger than 64 KiB"),
    ),
]


# --- the tests ---------------------------------------------------------------------------------------


def _ids(cases: list[Case]) -> list[str]:
    return [case.attack for case in cases]


def test_the_corpus_is_broad() -> None:
    assert len(REQUESTS) >= 60
    assert len({case.attack for case in REQUESTS}) == len(REQUESTS)
    assert len({case.attack for case in RESPONSES}) == len(RESPONSES)


@pytest.mark.parametrize("case", REQUESTS, ids=_ids(REQUESTS))
def test_a_request_gets_its_one_decision_however_its_bytes_are_cut(case: Case) -> None:
    messages = set()
    for pieces in splits(case.data):
        result = read_requests(pieces)
        check(case, result)
        if isinstance(result, HttpError):
            messages.add(result.message)
    assert len(messages) <= 1, messages


@pytest.mark.parametrize("case", RESPONSES, ids=_ids(RESPONSES))
def test_a_response_gets_its_one_decision_however_its_bytes_are_cut(case: Case) -> None:
    messages = set()
    for pieces in splits(case.data):
        result = read_response(pieces, case.method, case.eof)
        check(case, result, responses=True)
        if isinstance(result, HttpError):
            messages.add(result.message)
    assert len(messages) <= 1, messages


# --- what the gateway forwards ------------------------------------------------------------------------

FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ([^\x00-\x08\x0a-\x1f\x7f]*)")
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
GATEWAY_FIELDS = FORWARDED | {b"connection", b"upgrade"}  # the gateway writes these itself


def field_lines(head: bytes) -> tuple[bytes, Pairs]:
    """The start line and the field lines of a head the gateway wrote, each checked for syntax."""
    assert head.endswith(b"\r\n\r\n")
    start, *lines = head[:-4].split(b"\r\n")
    pairs = []
    for line in lines:
        match = FIELD_LINE.fullmatch(line)
        assert match, line
        pairs.append((match[1].lower(), match[2]))
    return start, tuple(pairs)


def check_framing(
    pairs: Pairs, framed: Framing, length: int, sender_fields: Pairs, own: frozenset[bytes] = GATEWAY_FIELDS
) -> None:
    """The gateway's own framing, exactly one kind of it, and nothing the sender named in Connection
    but the fields the gateway writes itself (`own`)."""
    names = [name for name, _ in pairs]
    assert not set(names) >= FRAMING, "Content-Length and Transfer-Encoding together"
    assert names.count(b"content-length") <= 1 and names.count(b"transfer-encoding") <= 1
    values = dict(pairs)
    if framed is Framing.CHUNKED:
        assert values.get(b"transfer-encoding") == b"chunked"
    elif framed is Framing.LENGTH:
        assert values.get(b"content-length") == b"%d" % length
    else:
        assert b"transfer-encoding" not in values
    named = {
        token.strip().lower()
        for name, value in sender_fields
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    for name in named & set(names):
        assert name in own, f"{name!r} was named in Connection and still forwarded"
    if b"x-forwarded-for" in named:
        assert values[b"x-forwarded-for"] == CLIENT.encode()


def forwarded_request(head: RequestHead, body: bytes) -> bytes:
    """The bytes the gateway sends a replica for this request (body pieces joined into one)."""
    wire = framing.request_head(head, CLIENT)
    if head.framing is Framing.CHUNKED:
        return wire + (b"".join(framing.chunk(body)) if body else b"") + framing.LAST_CHUNK
    return wire + body


def h11_requests(data: bytes) -> list[h11.Request | h11.Data | h11.EndOfMessage]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    events: list[h11.Request | h11.Data | h11.EndOfMessage] = []
    while (event := server.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
        assert isinstance(event, h11.Request | h11.Data | h11.EndOfMessage)
        events.append(event)
    assert server.trailing_data[0] == b"", "bytes beyond the one request"
    return events


def check_forwarded_request(message: Message) -> None:
    head = message.head
    assert isinstance(head, RequestHead)
    start, pairs = field_lines(framing.request_head(head, CLIENT))
    assert start == head.method + b" " + head.target + b" HTTP/1.1"
    check_framing(pairs, head.framing, head.length, head.fields.pairs)
    dropped = framing.HOP_BY_HOP | head.fields.tokens(b"connection") | FORWARDED
    sent = [(name.lower(), value) for name, value in head.fields.pairs if name.lower() not in dropped]
    written = GATEWAY_FIELDS | FRAMING | (frozenset() if head.fields.get(b"host") is not None else {b"host"})
    assert [pair for pair in pairs if pair[0] not in written] == sent, "end-to-end fields, in order"
    if not message.complete:
        return
    data = forwarded_request(head, bytes(message.body))
    events = h11_requests(data)  # h11 as the replica: exactly this request, then nothing
    request, *rest = events
    assert isinstance(request, h11.Request) and isinstance(rest[-1], h11.EndOfMessage)
    assert (request.method, request.target) == (head.method, head.target)
    assert b"".join(event.data for event in rest if isinstance(event, h11.Data)) == message.body
    again = read_requests([data])  # llhttp as the replica (uvicorn's httptools)
    assert isinstance(again, Read) and len(again.messages) == 1
    assert again.messages[0].complete and again.messages[0].body == message.body


@pytest.mark.parametrize("case", ACCEPTED_REQUESTS, ids=_ids(ACCEPTED_REQUESTS))
def test_an_accepted_request_is_forwarded_framed_by_the_gateway_alone(case: Case) -> None:
    result = read_requests([case.data])
    assert isinstance(result, Read)
    for message in result.messages:
        check_forwarded_request(message)


def reframed_response(head: ResponseHead, request: RequestHead, body: bytes) -> bytes:
    """The bytes the gateway sends a client for this response, as the exchange frames them."""
    wire = framing.response_head(head, request, keep_alive=head.keep_alive)
    if request.method == b"HEAD" or head.status == 101:
        return wire
    if framing.chunked_to_client(head, request):
        return wire + (b"".join(framing.chunk(body)) if body else b"") + framing.LAST_CHUNK
    return wire + body


ACCEPTED_RESPONSES = [case for case in RESPONSES if isinstance(case.outcome, Accepted)]


@pytest.mark.parametrize("case", ACCEPTED_RESPONSES, ids=_ids(ACCEPTED_RESPONSES))
def test_an_accepted_response_is_passed_on_framed_by_the_gateway_alone(case: Case) -> None:
    result = read_response([case.data], case.method, case.eof)
    assert isinstance(result, Read) and len(result.messages) == 1
    message = result.messages[0]
    head = message.head
    assert isinstance(head, ResponseHead)
    request = read_requests([case.method + b" / HTTP/1.1\r\nHost: h\r\n\r\n"])
    assert isinstance(request, Read)
    asked = request.messages[0].head
    assert isinstance(asked, RequestHead)
    data = reframed_response(head, asked, bytes(message.body))
    start, pairs = field_lines(data[: data.index(b"\r\n\r\n") + 4])
    assert start.startswith(b"HTTP/1.1 %d " % head.status)
    if asked.method != b"HEAD" and head.status not in (101, 204, 304):
        check_framing(
            pairs,
            Framing.CHUNKED if head.framing is Framing.UNTIL_CLOSE else head.framing,
            head.length,
            head.fields.pairs,
            own=GATEWAY_FIELDS | FRAMING,  # the gateway's framing, whatever the replica named
        )

    if head.status == 101:
        return  # a tunnel from here on
    client = h11.Connection(h11.CLIENT)  # h11 as the client: exactly this response
    client.send(h11.Request(method=asked.method, target="/", headers=[("Host", "h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    first = client.next_event()
    assert isinstance(first, h11.Response | h11.InformationalResponse)
    assert first.status_code == head.status
    body = b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage)
    assert body == (b"" if asked.method == b"HEAD" else message.body)
    assert client.trailing_data[0] == b""


# --- the review: slow heads --------------------------------------------------------------------------


def _trickle(data: bytes) -> tuple[float, Read | HttpError, int]:
    """Feed `data` byte by byte: the time it took, the result, how many bytes went in."""
    reader, result, fed = RequestReader(), Read(), 0
    started = time.perf_counter()
    try:
        for fed in range(1, len(data) + 1):
            result.take(reader.feed(data[fed - 1 : fed]))
    except HttpError as error:
        return time.perf_counter() - started, error, fed
    return time.perf_counter() - started, result, fed


def test_a_64_kib_head_trickled_in_byte_by_byte_is_read_quickly() -> None:
    head = get(fields=b"".join(b"X-%04d: %s\r\n" % (i, b"v" * 40) for i in range(900)))
    head += get(fields=b"X-Big: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n")  # and one long field

    took, result, _ = _trickle(head)

    assert isinstance(result, Read) and len(result.messages) == 2 and all(m.complete for m in result.messages)
    assert took < 5, f"{took:.2f} s"


@pytest.mark.parametrize(
    "endless",
    [
        b"X-Endless: " + b"a" * 1_000_000,  # a value
        b"X" * 1_000_000,  # a name
        b"X-Many: " + b"v\r\nX-Many: " * 200_000,  # many fields
    ],
    ids=["value", "name", "fields"],
)
def test_a_head_trickled_in_past_the_limit_is_refused_at_the_limit(endless: bytes) -> None:
    took, result, fed = _trickle(get().removesuffix(b"\r\n") + endless)

    assert isinstance(result, HttpError) and result.status == 431
    assert fed <= MAX_HEAD_BYTES + 64  # refused as the limit passes, not when the line ends
    assert took < 5, f"{took:.2f} s"


def test_a_field_buffered_by_a_large_first_read_still_counts() -> None:
    reader = RequestReader()
    reader.feed(get() + get().removesuffix(b"\r\n") + b"X-Big: " + b"a" * (MAX_HEAD_BYTES - 1024))

    with pytest.raises(HttpError) as refused:
        for _ in range(32 * 1024):
            reader.feed(b"a")

    assert refused.value.status == 431
