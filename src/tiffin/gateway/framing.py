"""The bytes the gateway writes: request heads to replicas, response heads to clients, and body framing.

Heads are rebuilt, never copied: hop-by-hop fields (RFC 9110 §7.6.1) and any field the sender named in
`Connection` stop here, and so does every framing field, because the gateway frames each body itself:
`Content-Length` when the length is known, else chunked transfer coding (close-delimited for HTTP/1.0
clients). So what reaches a replica or a client is framed by one party only, whatever the sender wrote.

`X-Forwarded-For` gets the client's address appended. `X-Forwarded-Proto` and `X-Forwarded-Host` a proxy
in front sent (one that terminates TLS, say) are passed on as they came, else the gateway writes `http`
and the `Host` it got: information for the app (to build its own URLs), never used for routing, which
goes by `Host` alone.
"""

from tiffin.gateway.parsing import Fields, Framing, RequestHead, ResponseHead

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
    }
)
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
_NO_FRAMING_STATUSES = frozenset({101, 204, 304})
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CRLF = b"\r\n"


def request_head(request: RequestHead, client_host: str) -> bytes:
    """The head sent to a replica: HTTP/1.1, end-to-end fields, X-Forwarded-*, the gateway's framing."""
    lines = [request.method, b" ", request.target, b" HTTP/1.1\r\n"]
    lines += _end_to_end(request.fields, _FORWARDED)
    named = request.fields.tokens(b"connection")  # X-Forwarded-* named there were for this hop only
    earlier = request.fields.get(b"x-forwarded-for") if b"x-forwarded-for" not in named else None
    client = client_host.encode()
    lines += [b"x-forwarded-for: ", client if earlier is None else earlier + b", " + client, _CRLF]
    proto = _from_earlier_proxy(request.fields, b"x-forwarded-proto", named) or b"http"
    lines += [b"x-forwarded-proto: ", proto, _CRLF]
    host = request.fields.get(b"host")
    forwarded_host = _from_earlier_proxy(request.fields, b"x-forwarded-host", named) or host
    if forwarded_host is not None:
        lines += [b"x-forwarded-host: ", forwarded_host, _CRLF]
    if host is None:  # HTTP/1.0 without one: HTTP/1.1 needs it, empty for no authority (RFC 9112 §3.2)
        lines.append(b"host: \r\n")
    lines.append(_request_framing(request))
    if request.upgrade == b"websocket":
        lines.append(b"connection: upgrade\r\nupgrade: websocket\r\n")
    lines.append(_CRLF)
    return b"".join(lines)


def _from_earlier_proxy(fields: Fields, name: bytes, named: frozenset[bytes]) -> bytes | None:
    """A forwarding field as a proxy in front sent it; None if absent, empty, or meant for this hop only."""
    return None if name in named else fields.get(name) or None


def _request_framing(request: RequestHead) -> bytes:
    if request.framing is Framing.CHUNKED:
        return b"transfer-encoding: chunked\r\n"
    if request.framing is Framing.LENGTH:
        return b"content-length: %d\r\n" % request.length
    return b"content-length: 0\r\n" if request.fields.get(b"content-length") is not None else b""


def chunked_to_client(response: ResponseHead, request: RequestHead) -> bool:
    """Whether the body goes to the client in chunks (its length is unknown and the client speaks 1.1)."""
    return response.framing in (Framing.CHUNKED, Framing.UNTIL_CLOSE) and request.minor == 1


def closes_client(response: ResponseHead, request: RequestHead) -> bool:
    """Whether the client connection must end with this response (a 1.0 client and no known length)."""
    return response.framing in (Framing.CHUNKED, Framing.UNTIL_CLOSE) and request.minor == 0


def response_head(response: ResponseHead, request: RequestHead, keep_alive: bool) -> bytes:
    """The head sent to the client: the replica's status and end-to-end fields, the gateway's framing."""
    reason = response.reason or b"-"
    lines = [b"HTTP/1.1 %d " % response.status, reason, _CRLF]  # a server names its own version
    lines += _end_to_end(response.fields)
    lines.append(_response_framing(response, request))
    if response.status == 101:
        lines.append(b"connection: upgrade\r\nupgrade: websocket\r\n")
    elif not keep_alive:
        lines.append(b"connection: close\r\n")
    elif request.minor == 0:
        lines.append(b"connection: keep-alive\r\n")
    lines.append(_CRLF)
    return b"".join(lines)


def _response_framing(response: ResponseHead, request: RequestHead) -> bytes:
    if response.status in _NO_FRAMING_STATUSES or request.method == b"HEAD":
        length = response.fields.get(b"content-length")  # what a GET would get: the replica's word
        return b"content-length: " + length + _CRLF if length is not None and response.status != 101 else b""
    if response.framing is Framing.LENGTH:
        return b"content-length: %d\r\n" % response.length
    if response.framing is Framing.NONE:
        return b"content-length: 0\r\n"
    return b"transfer-encoding: chunked\r\n" if request.minor == 1 else b""


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk of a chunked body, as the pieces to write (the data itself is not copied); never empty:
    an empty chunk would end the body."""
    return b"%x\r\n" % len(data), data, _CRLF


def _end_to_end(fields: Fields, dropped: frozenset[bytes] = frozenset()) -> list[bytes]:
    named = fields.tokens(b"connection")  # fields the sender marked as hop-by-hop
    kept: list[bytes] = []
    for name, value in fields.pairs:
        lowered = name.lower()
        if lowered not in HOP_BY_HOP and lowered not in named and lowered not in dropped:
            kept += [name, b": ", value, _CRLF]
    return kept
