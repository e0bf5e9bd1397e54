"""The heads the gateway sends on: hop-by-hop fields dropped, X-Forwarded-* added.

Hop-by-hop fields describe one connection, not the message, so they stop at the gateway (RFC 9110
§7.6.1). Transfer-Encoding is the exception we keep: bodies are forwarded with their chunk framing.
`Expect` stops here too: the gateway answers `100 Continue` itself once it has decided to forward.
"""

from tiffin.gateway.http1 import Fields, RequestHead, ResponseHead

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"expect"}
)
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
_REPLACED = HOP_BY_HOP | _FORWARDED
_CLOSE = b"connection: close\r\n"


def request_head(request: RequestHead, client_host: str) -> bytes:
    """The head sent to a replica: same method, target and end-to-end fields, plus X-Forwarded-*."""
    fields = request.fields
    if request.raw is not None and _REPLACED.isdisjoint(fields.index):
        parts = [request.raw, b"\r\n"]  # the common case: nothing to drop, forward it as it came
    else:
        version = b" HTTP/1.1\r\n" if request.minor else b" HTTP/1.0\r\n"
        parts = [request.method, b" ", request.target, version, *_end_to_end(fields, _REPLACED)]
    earlier = fields.get(b"x-forwarded-for")
    forwarded_for = client_host.encode() if earlier is None else earlier + b", " + client_host.encode()
    parts += [b"x-forwarded-for: ", forwarded_for, b"\r\nx-forwarded-proto: http\r\n"]
    host = fields.get(b"host")
    if host is not None:
        parts += [b"x-forwarded-host: ", host, b"\r\n"]
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head(response: ResponseHead, close: bool) -> bytes:
    """The head sent to the client: the replica's status and end-to-end fields."""
    if HOP_BY_HOP.isdisjoint(response.fields.index):
        parts = [response.raw, b"\r\n"]
    else:
        parts = [response.status_line, b"\r\n", *_end_to_end(response.fields, HOP_BY_HOP)]
    if close:
        parts.append(_CLOSE)
    parts.append(b"\r\n")
    return b"".join(parts)


def wants_close(fields: Fields, minor: int) -> bool:
    """Whether the sender of a message ends the connection after it (HTTP/1.0 unless keep-alive)."""
    tokens = fields.tokens(b"connection")
    if minor == 0:
        return b"keep-alive" not in tokens
    return b"close" in tokens


def _end_to_end(fields: Fields, dropped: frozenset[bytes]) -> list[bytes]:
    named = fields.tokens(b"connection")  # fields the sender marked as hop-by-hop
    kept: list[bytes] = []
    for name, value in fields.pairs:
        lowered = name.lower()
        if lowered not in dropped and lowered not in named:
            kept += [name, b": ", value, b"\r\n"]
    return kept
