"""Where a message body ends (RFC 9112 §6), found without decoding it.

The gateway forwards bodies byte for byte (chunk framing included), so it never re-encodes anything;
it only needs to know how many of the buffered bytes still belong to the current message, so the
connection can carry the next one. A framer scans the front of a buffer and says how much is body.
"""

from typing import Protocol

from tiffin.gateway.http1 import Fields, HttpError, RequestHead, ResponseHead

MAX_CHUNK_LINE = 4096  # a chunk-size line or trailer line longer than this is refused


class Framer(Protocol):
    done: bool  # the whole body has been scanned
    ends_at_eof: bool  # the body is delimited by the connection closing

    def scan(self, buffer: bytearray) -> int:
        """How many bytes at the front of `buffer` belong to the body (all, some or none)."""
        ...


class Empty:
    done = True
    ends_at_eof = False

    def scan(self, buffer: bytearray) -> int:
        return 0


class Length:
    ends_at_eof = False

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0

    def scan(self, buffer: bytearray) -> int:
        size = min(self.remaining, len(buffer))
        self.remaining -= size
        self.done = self.remaining == 0
        return size


class UntilClose:
    done = False
    ends_at_eof = True

    def scan(self, buffer: bytearray) -> int:
        return len(buffer)


_SIZE, _DATA_END, _TRAILER = 0, 1, 2


class Chunked:
    """Follows chunked transfer coding: size line, data, CRLF, ..., `0` line, trailers, empty line."""

    ends_at_eof = False

    def __init__(self) -> None:
        self.done = False
        self._state = _SIZE
        self._data_left = 0

    def scan(self, buffer: bytearray) -> int:
        pos, end = 0, len(buffer)
        while not self.done and pos < end:
            if self._data_left:
                step = min(self._data_left, end - pos)
                self._data_left -= step
                pos += step
            elif self._state == _DATA_END:
                if end - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise HttpError(400, "A chunk of the body is not followed by CRLF.")
                pos += 2
                self._state = _SIZE
            else:
                line_end = buffer.find(b"\r\n", pos)
                if line_end < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise HttpError(400, "A chunk-size or trailer line is too long.")
                    break
                self._line(bytes(buffer[pos:line_end]))
                pos = line_end + 2
        return pos

    def _line(self, line: bytes) -> None:
        if self._state == _TRAILER:
            self.done = not line
            return
        size = _chunk_size(line)
        if size == 0:
            self._state = _TRAILER
        else:
            self._data_left = size
            self._state = _DATA_END


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        raise HttpError(400, "A chunk-size line is not a hexadecimal number.")
    return int(digits, 16)


def request_framer(head: RequestHead) -> Framer:
    """The body framing of a request; refuses ambiguous framing (the request-smuggling cases)."""
    coding = head.fields.get(b"transfer-encoding")
    if coding is not None:
        if head.fields.get(b"content-length") is not None or head.minor == 0:
            raise HttpError(400, "Send either Content-Length or Transfer-Encoding: chunked, not both.")
        if coding.strip().lower() != b"chunked":
            raise HttpError(501, "Only Transfer-Encoding: chunked is supported for request bodies.")
        return Chunked()
    length = content_length(head.fields)
    return Empty() if not length else Length(length)


def response_framer(head: ResponseHead, method: bytes) -> Framer:
    """The body framing of a response to a request with `method`."""
    if method == b"HEAD" or head.status < 200 or head.status in (204, 304):
        return Empty()
    coding = head.fields.get(b"transfer-encoding")
    if coding is not None:
        return Chunked() if coding.lower().endswith(b"chunked") else UntilClose()
    length = content_length(head.fields)
    return UntilClose() if length is None else Length(length)


def content_length(fields: Fields) -> int | None:
    value = fields.get(b"content-length")
    if value is None:
        return None
    if value.isdigit() and len(value) <= 18:
        return int(value)
    values = {part.strip() for part in value.split(b",")}
    length = values.pop()
    if values or not length.isdigit() or len(length) > 18:
        raise HttpError(400, "The Content-Length header is not one non-negative integer.")
    return int(length)
