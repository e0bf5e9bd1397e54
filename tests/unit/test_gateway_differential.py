"""The gateway is never more lenient than h11: the same bytes through both, and the gateway's reading
must be h11's or a refusal.

The inputs are the hostile corpus (`test_gateway_hostile`), valid requests, and variations generated
from valid requests, deterministically: a CR, LF, NUL, tab, space or other byte inserted at every
position or put in place of a byte, a byte dropped, framing fields obfuscated, duplicated or named in
Connection, names and methods cased differently. When both accept, they must read the same requests:
method, target (absolute-form reduced to origin form), fields, body, whether it ended, and what follows
a switch of protocols.

Where the gateway reads what h11 refuses, or reads it otherwise, the difference must be one of the
`ALLOWED` leniencies below, each explained: the gateway's reading must then be exactly h11's reading of
the same bytes in canonical form, and what it forwards must be canonical (`check_forwarded_request`).
"""

import functools
import itertools
import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from unittest import mock

import h11
import h11._abnf
import h11._readers
from test_gateway_hostile import (
    REQUESTS,
    WEBSOCKET,
    Read,
    check_forwarded_request,
    chunked,
    get,
    post,
    read_requests,
    sized,
)

from tiffin.gateway.parsing import MAX_HEAD_BYTES, Framing, RequestHead

Pairs = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Seen:
    """One request as a parser read it, in terms both parsers share."""

    method: bytes
    target: bytes  # origin form
    fields: Pairs  # names lower-cased; Transfer-Encoding's value too (h11 lower-cases it)
    body: bytes
    complete: bool


@dataclass(frozen=True)
class Verdict:
    requests: tuple[Seen, ...] = ()
    refused: bool = False
    tunnel: bytes | None = None  # what follows a switch to WebSocket


def _fields(pairs: Pairs) -> Pairs:
    lowered = ((name.lower(), value) for name, value in pairs)
    return tuple((name, value.lower() if name == b"transfer-encoding" else value) for name, value in lowered)


_ABSOLUTE = re.compile(rb"https?://[^/?#]*(.*)", re.IGNORECASE | re.DOTALL)


def origin_form(target: bytes) -> bytes:
    """RFC 9112 §3.2.2: an absolute-form target as the origin form a server would be sent."""
    match = _ABSOLUTE.fullmatch(target)
    if match is None:
        return target
    rest = match[1]
    return rest if rest.startswith(b"/") else b"/" + rest


# --- h11, the reference --------------------------------------------------------------------------------

# h11's chunk-size line, but with any number of leading zeros before its 1 to 20 digits
_LEADING_ZEROS = re.compile(
    h11._abnf.chunk_header.replace("(?P<chunk_size>", "(?P<chunk_size>0*", 1).encode()
)
_SPACED_REQUEST_LINE = re.compile(rb"([A-Z]+) +(\S+) +(HTTP/\d\.\d)")


def h11_verdict(
    data: bytes,
    *,
    empty_lines: bool = False,
    spaces: bool = False,
    leading_zeros: bool = False,
    http10_keep_alive: bool = False,
) -> Verdict:
    """h11's reading of `data` as one client connection, one request at a time, as a server that
    declines every upgrade but WebSocket would read it. The flags read the canonical form of what the
    `ALLOWED` leniencies accept: empty lines before a request line dropped, single spaces in request
    lines, chunk sizes without leading zeros, HTTP/1.0 connections kept alive when asked."""
    seen: list[Seen] = []
    rest = data
    while True:
        rest = _canonical(rest, empty_lines, spaces)
        if not rest:
            return Verdict(tuple(seen))
        # h11 refuses heads over 16 KiB by default: a size is policy, not parsing, so use the gateway's
        server = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        server.receive_data(rest)
        lenient = (
            mock.patch.object(h11._readers, "chunk_header_re", _LEADING_ZEROS) if leading_zeros else None
        )
        try:
            with lenient or nullcontext():
                one = _one_request(server)
        except h11.RemoteProtocolError:
            return Verdict(tuple(seen), refused=True)
        if one is None:
            return Verdict(tuple(seen))
        seen.append(one[0])
        if not one[0].complete:
            return Verdict(tuple(seen))
        rest = server.trailing_data[0]
        connection = {token.strip() for token in _header(one[1], b"connection").split(b",")}
        if b"upgrade" in connection and _header(one[1], b"upgrade") == b"websocket":
            return Verdict(tuple(seen), tunnel=rest)  # the gateway tunnels once the replica agrees
        keep_10 = http10_keep_alive and one[1].http_version == b"1.0" and b"keep-alive" in connection
        if server.their_state is h11.MUST_CLOSE and not keep_10:
            return Verdict(tuple(seen))  # the connection ends with the answer: nothing more is read


def _canonical(rest: bytes, empty_lines: bool, spaces: bool) -> bytes:
    """What comes next on the connection, with the leniencies given put in canonical form."""
    if empty_lines:
        rest = rest.lstrip(b"\r\n")
    if spaces:
        line, crlf, after = rest.partition(b"\r\n")
        rest = _SPACED_REQUEST_LINE.sub(rb"\1 \2 \3", line) + crlf + after
    return rest


def _one_request(server: h11.Connection) -> tuple[Seen, h11.Request] | None:
    """The next request on `server` (None before its head is whole); h11's errors propagate."""
    request: h11.Request | None = None
    body = b""
    while True:
        event = server.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return None if request is None else (_seen(request, body, complete=False), request)
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return _seen(request, body, complete=True), request


def _header(request: h11.Request, name: bytes) -> bytes:
    return b", ".join(value for key, value in request.headers if key == name).lower()


def _seen(request: h11.Request, body: bytes, complete: bool) -> Seen:
    pairs = tuple((name, value) for name, value in request.headers.raw_items())
    return Seen(request.method, origin_form(request.target), _fields(pairs), body, complete)


# --- the gateway ---------------------------------------------------------------------------------------


def gateway_verdict(data: bytes) -> tuple[Verdict, Read | None]:
    """The gateway's reading of `data` as one client connection: a connection it closes after a request
    (or hands to a tunnel) reads nothing after it."""
    result = read_requests([data])
    if not isinstance(result, Read):
        return Verdict(refused=True), None
    seen: list[Seen] = []
    tunnel = None
    for message in result.messages:
        head = message.head
        assert isinstance(head, RequestHead)
        fields = _fields(head.fields.pairs)
        seen.append(Seen(head.method, head.target, fields, bytes(message.body), message.complete))
        if head.upgrade == b"websocket":
            tunnel = result.tunnel
            break
        if not head.keep_alive:
            break
    return Verdict(tuple(seen), tunnel=tunnel), result


# --- the allowed leniencies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leniency:
    """Input the gateway reads and h11 refuses (or reads otherwise), judged harmless: `flag` makes
    `h11_verdict` read its canonical form, which the gateway's reading must equal exactly."""

    flag: str
    why: str


ALLOWED = (
    Leniency(
        "empty_lines",
        # RFC 9112 §2.2 lets a server ignore empty lines before a request line; llhttp skips any run of
        # CR and LF there (h11 refuses them). They belong to no message and are never forwarded, and
        # the request after them is framed exactly as without them.
        "CR and LF before a request line are skipped",
    ),
    Leniency(
        "spaces",
        # llhttp takes one or more SP between method, target and version (h11: exactly one). A target
        # cannot contain SP, so the parts are unambiguous, and the gateway writes its own request line
        # with single spaces: nothing after it sees the extra ones.
        "several spaces between the parts of a request line",
    ),
    Leniency(
        "leading_zeros",
        # llhttp reads a chunk size of any number of hex digits and refuses one over 64 bits (h11:
        # at most 20 digits). Leading zeros change no value, and the gateway re-chunks every body, so
        # a replica never sees these size lines.
        "chunk sizes with more than 20 digits, all leading zeros",
    ),
    Leniency(
        "http10_keep_alive",
        # An HTTP/1.0 client may ask to keep its connection (`Connection: keep-alive`, RFC 9112
        # Appendix C.2.2); the gateway honours it when the request is length-delimited, while h11
        # closes every HTTP/1.0 connection. Each request is framed by Content-Length (an HTTP/1.0
        # request with Transfer-Encoding closes: RFC 9112 §6.1), so both read the same messages.
        "HTTP/1.0 connections kept alive on request",
    ),
)


def _allowance(data: bytes, gateway: Verdict) -> tuple[str, ...] | None:
    """The fewest leniencies whose canonical reading is the gateway's; None if no set of them is."""
    flags = [lenient.flag for lenient in ALLOWED]
    for size in range(1, len(flags) + 1):
        for chosen in itertools.combinations(flags, size):
            if h11_verdict(data, **dict.fromkeys(chosen, True)) == gateway:
                return chosen
    return None


# --- the corpus ----------------------------------------------------------------------------------------

VALID = [
    get(),
    get(b"/p?q=1&r=%20", b"Accept: */*\r\nX-Tab: a\tb\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n"),
    get(b"http://h:8080/p?x=1", b"Connection: close\r\n"),
    get(b"HTTP://h?x=1"),
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /p HTTP/1.0\r\nHost: h\r\nConnection: close\r\n\r\n",
    sized(b"hello"),
    sized(b"") + sized(b"x" * 1000),
    chunked(b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
    chunked(b"000A\r\n0123456789\r\n0\r\n\r\n"),
    sized(b"hi") + get(b"/2") + chunked(b"1\r\nx\r\n0\r\n\r\n"),
    post(b"Expect: 100-continue\r\nContent-Length: 3\r\n", b"abc"),
    get(fields=WEBSOCKET) + b"\x81\x00",
    get(fields=b"Connection: keep-alive, X-Private\r\nX-Private: 1\r\nX-Forwarded-For: 1.2.3.4\r\n"),
    b"DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    sized(b"hello")[:-2],  # a body still arriving
    chunked(b"5\r\nhel"),
]

# the bases the generator mutates: small, and covering every framing
BASES = [
    get(fields=b"X-A: b\r\n"),
    sized(b"hello"),
    chunked(b"5;e=1\r\nhello\r\n0\r\nX-T: t\r\n\r\n"),
    sized(b"hi") + get(b"/2"),
    b"GET /p?q HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx" + b"GET / HTTP/1.0\r\n\r\n",
    get(b"http://h/p?x=1", b"Connection: close\r\n"),
    get(fields=WEBSOCKET) + b"\x81\x00",
    chunked(b"3\r\nabc\r\n0\r\n\r\n") + sized(b"x"),
]
INSERTED = (
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\t",
    b" ",
    b"\x0b",
    b"\x0c",
    b"\x7f",
    b"\xff",
    b",",
    b";",
    b":",
    b"0",
)
REPLACING = (b"\r", b"\n", b"\x00", b" ", b"\t", b"A")
TRANSFER_ENCODINGS = (
    b"chunked",
    b"Chunked",
    b" chunked",
    b"chunked ",
    b"\tchunked",
    b"chunked\t",
    b"chunked\x0b",
    b"\x0bchunked",
    b"chunked, chunked",
    b"chunked,",
    b",chunked",
    b"identity, chunked",
    b"chunked, identity",
    b"gzip, chunked",
    b"xchunked",
    b"chunkedx",
    b"chunk",
    b'"chunked"',
    b"chunked;q=1",
    b"chunked\r\n Transfer-Encoding: x",
    b"chunked\r\nTransfer-Encoding: chunked",
    b"chunked\r\nTransfer-Encoding: identity",
    b"chunked\r\nContent-Length: 3",
    b"chunked\r\nConnection: transfer-encoding",
    b"",
)
CONTENT_LENGTHS = (
    b"5",
    b"+5",
    b"-5",
    b"05",
    b"5 ",
    b" 5",
    b"5\t",
    b"5,5",
    b"5, 5",
    b"5, 6",
    b"0x5",
    b"5.0",
    b"5e0",
    b"",
    b"99999999999999999999",
    b"5\r\nContent-Length: 5",
    b"5\r\nContent-Length: 6",
    b"5\r\nTransfer-Encoding: chunked",
    b"5\r\nConnection: content-length",
    b"5\r\n Content-Length: 6",
)
FRAMING_NAMES = (
    b"Transfer-Encoding",
    b"transfer-encoding",
    b"TRANSFER-ENCODING",
    b"Transfer-encoding",
    b"Transfer_Encoding",
    b"Transfer-Encoding ",
    b" Transfer-Encoding",
    b"Transfer-Encoding\t",
    b"X-Transfer-Encoding",
)


def generated() -> Iterator[bytes]:
    """Variations of `BASES`, each one change away from a valid request (or pipeline), and framing
    fields obfuscated every usual way."""
    for base in BASES:
        yield from _byte_variations(base)
    yield from _framing_variations()


def _byte_variations(base: bytes) -> Iterator[bytes]:
    for at in range(len(base) + 1):
        for byte in INSERTED:
            yield base[:at] + byte + base[at:]
    for at in range(len(base)):
        yield base[:at] + base[at + 1 :]
        for byte in REPLACING:
            yield base[:at] + byte + base[at + 1 :]
    yield base.replace(b"GET", b"get", 1).replace(b"HTTP/1.1", b"http/1.1", 1)
    yield base.replace(b"Host: h", b"HOST: h").replace(b"Host: h", b"Host: h\r\nHost: h")


def _framing_variations() -> Iterator[bytes]:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    for value in TRANSFER_ENCODINGS:
        yield post(b"Transfer-Encoding: " + value + b"\r\n", body)
        yield post(b"Content-Length: 5\r\nTransfer-Encoding: " + value + b"\r\n", body)
        yield post(b"Transfer-Encoding: " + value + b"\r\nContent-Length: 5\r\n", body) + get()
    for value in CONTENT_LENGTHS:
        yield post(b"Content-Length: " + value + b"\r\n", b"hello" + get())
    for name in FRAMING_NAMES:
        yield post(name + b": chunked\r\n", body) + get()
        yield post(name + b": chunked\r\nContent-Length: 5\r\n", body) + get()
    for named in (b"content-length", b"Transfer-Encoding", b"host", b"close, content-length", b"x-a"):
        yield post(b"Connection: " + named + b"\r\nContent-Length: 5\r\nX-A: 1\r\n", b"hello")


@dataclass
class Tally:
    inputs: int = 0
    failures: list[str] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)


def differ(inputs: list[bytes]) -> Tally:
    """Run every input through both parsers; collect each case where the gateway is more lenient
    without an allowance, and how often each allowance served."""
    tally = Tally()
    for data in dict.fromkeys(inputs):
        tally.inputs += 1
        gateway, read = gateway_verdict(data)
        if gateway.refused:
            continue
        try:
            for message in read.messages if read is not None else []:
                check_forwarded_request(message)  # canonical, whether or not h11 agrees
        except (AssertionError, h11.ProtocolError) as error:
            tally.failures.append(f"{data!r}: forwarded otherwise than canonically: {error!r}")
        if h11_verdict(data) == gateway:
            continue
        flags = _allowance(data, gateway)
        if flags is None:
            tally.failures.append(f"{data!r}: gateway {gateway}, h11 {h11_verdict(data)}")
        for flag in flags or ():
            tally.used[flag] = tally.used.get(flag, 0) + 1
    return tally


def _report(tally: Tally) -> str:
    return f"{len(tally.failures)} of {tally.inputs} inputs:\n" + "\n".join(tally.failures[:20])


# --- the tests -----------------------------------------------------------------------------------------


def test_valid_requests_are_read_exactly_as_h11_reads_them() -> None:
    for data in VALID:
        gateway, _ = gateway_verdict(data)
        assert not gateway.refused, data
        assert gateway == h11_verdict(data), data


@functools.cache
def hostile() -> Tally:
    return differ([case.data for case in REQUESTS])


@functools.cache
def variations() -> Tally:
    return differ(list(generated()))


def test_the_hostile_corpus_is_never_read_more_leniently_than_h11_reads_it() -> None:
    tally = hostile()
    assert not tally.failures, _report(tally)


def test_variations_of_valid_requests_are_never_read_more_leniently_than_h11_reads_them() -> None:
    tally = variations()
    assert tally.inputs > 10_000
    assert not tally.failures, _report(tally)


def test_every_allowance_is_still_needed() -> None:
    """Each leniency serves some input: if llhttp grows stricter, its entry must go."""
    used = set(hostile().used) | set(variations().used)
    assert used == {lenient.flag for lenient in ALLOWED}


def test_h11_and_the_gateway_agree_on_framing_of_the_valid_corpus() -> None:
    framings = set()
    for data in VALID:
        _, read = gateway_verdict(data)
        assert read is not None
        framings |= {message.head.framing for message in read.messages}
    assert framings == {Framing.NONE, Framing.LENGTH, Framing.CHUNKED}
