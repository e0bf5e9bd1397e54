"""HTTP/1.x message heads: strict parsing of what clients and replicas send.

The gateway parses heads itself (bytes in, small objects out) instead of using a general HTTP server,
because only the head matters to a proxy and a full server costs several times the CPU per request.
It is strict where leniency enables request smuggling: bare CR/LF, folded lines, bad field names.
"""

import re
from dataclasses import dataclass

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/1\.([01])")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\r\n\x00]*)?")
# Every field line, each preceded by its CRLF; a value holds no CR, LF or NUL (so no folding, no
# bare line breaks). One regex pass validates the whole block; another extracts the fields.
_FIELD_BLOCK = re.compile(rb"(?:\r\n" + _TOKEN + rb":[^\r\n\x00]*)*")
_FIELD = re.compile(rb"\r\n(" + _TOKEN + rb"):[ \t]*([^\r\n]*)")


class HttpError(Exception):
    """A message the gateway refuses; `status` is what a client gets back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Fields:
    """Header fields as received (names in their case) and a lower-cased index for lookups."""

    pairs: list[tuple[bytes, bytes]]
    index: dict[bytes, bytes]  # lower-cased name -> value; repeated fields joined with ", "

    def get(self, name: bytes) -> bytes | None:
        return self.index.get(name)

    def tokens(self, name: bytes) -> frozenset[bytes]:
        """The comma-separated, lower-cased tokens of a list field such as Connection."""
        value = self.index.get(name)
        if not value:
            return frozenset()
        return frozenset(part.strip().lower() for part in value.split(b","))


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    minor: int  # 0 for HTTP/1.0, 1 for HTTP/1.1
    fields: Fields
    raw: bytes | None  # the head as received (without its final CRLF CRLF), unless the target was rewritten


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    minor: int
    status_line: bytes
    fields: Fields
    raw: bytes  # the head as received, without its final CRLF CRLF


def parse_request(raw: bytes | bytearray) -> RequestHead:
    """Parse a request head: everything up to and including the empty line."""
    head, line_end = _head(raw)
    match = _REQUEST_LINE.fullmatch(head, 0, line_end)
    if match is None:
        raise HttpError(400, "The request line is not valid HTTP/1.1: send `METHOD /path HTTP/1.1`.")
    method, received, minor = match.groups()
    target = _origin_form(received)
    verbatim = head if target is received else None
    return RequestHead(method, target, int(minor), parse_fields(head, line_end), verbatim)


def parse_response(raw: bytes | bytearray) -> ResponseHead:
    """Parse a response head from a replica: everything up to and including the empty line."""
    head, line_end = _head(raw)
    match = _STATUS_LINE.fullmatch(head, 0, line_end)
    if match is None:
        raise HttpError(502, "The replica answered with an invalid HTTP status line.")
    return ResponseHead(int(match[2]), int(match[1]), head[:line_end], parse_fields(head, line_end), head)


def parse_fields(head: bytes, start: int) -> Fields:
    """The fields of `head` from offset `start` (the CRLF that ends the start line)."""
    if _FIELD_BLOCK.fullmatch(head, start) is None:
        raise HttpError(
            400, "A header line is malformed: send `Name: value` lines ending in CRLF, without folding."
        )
    pairs = [(name, value.rstrip(b" \t")) for name, value in _FIELD.findall(head, start)]
    index = {name.lower(): value for name, value in pairs}
    if len(index) < len(pairs):  # a repeated field: join its values, in order
        index = {}
        for name, value in pairs:
            key = name.lower()
            index[key] = value if key not in index else index[key] + b", " + value
    return Fields(pairs, index)


def _head(raw: bytes | bytearray) -> tuple[bytes, int]:
    """The head without its final CRLF CRLF (the caller includes it), and where its first line ends."""
    head = bytes(raw[:-4])
    line_end = head.find(b"\r\n")
    return head, len(head) if line_end < 0 else line_end


def _origin_form(target: bytes) -> bytes:
    """Absolute-form targets (`http://host/path`) become origin-form (`/path`) for the replica."""
    if target.startswith(b"/") or target == b"*":
        return target
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise HttpError(400, "The request target must be a path starting with `/`.")
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"
