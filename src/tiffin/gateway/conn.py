"""One side of a proxied exchange: a TCP connection, its unconsumed bytes, and its flow-control state.

The gateway is event-driven: bytes are handled in the protocol callbacks that deliver them, not in a
coroutine woken afterwards. That saves a trip round the event loop (and a future) per read, which is
most of a Python proxy's cost per request. Subclasses react through the `on_*` hooks; anything they
raise is logged and ends the connection instead of escaping into asyncio.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from tiffin.gateway.http1 import HttpError

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024  # stop reading from the socket while this many bytes wait to be consumed
_FULL = "buffer full"


class Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False  # the peer sent everything it will send (or the connection is gone)
        self.lost = False  # the connection is gone: writes are dropped
        self.write_paused = False
        self.transport: asyncio.Transport | None = None
        self._holds: set[str] = set()  # why reading is paused; reading resumes when none is left

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.guard(self.on_made)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER:
            self.hold(_FULL)
        self.guard(self.on_data)

    def eof_received(self) -> bool:
        self.eof = True
        self.guard(self.on_eof)
        return True  # keep the write side open: a half-closed peer may still read an answer

    def connection_lost(self, exc: Exception | None) -> None:
        ended, self.eof, self.lost = self.eof, True, True
        if not ended:
            self.guard(self.on_eof)
        self.guard(self.on_lost)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.guard(self.on_drained)

    # hooks

    def on_made(self) -> None:
        pass

    def on_data(self) -> None:
        pass

    def on_eof(self) -> None:
        """The peer stopped sending; called once, before `on_lost` (with `lost` set if it is gone)."""

    def on_lost(self) -> None:
        """The connection is gone; called once, last."""

    def on_drained(self) -> None:
        pass

    def on_error(self) -> None:
        self.abort()

    # what the gateway uses

    def take(self, size: int) -> bytes | bytearray:
        """Remove and return the first `size` buffered bytes."""
        data: bytes | bytearray
        if size >= len(self.buffer):
            data, self.buffer = self.buffer, bytearray()
        else:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
        if _FULL in self._holds and len(self.buffer) <= HIGH_WATER:
            self.release(_FULL)
        return data

    def take_head(self, limit: int) -> bytes | bytearray | None:
        """The next message head (through its empty line) if it has fully arrived, else None."""
        while self.buffer.startswith(b"\r\n"):
            del self.buffer[:2]  # RFC 9112 §2.2: ignore empty lines before a message
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0:
            return self.take(end + 4)
        if len(self.buffer) > limit:
            raise HttpError(431, f"The message head is larger than {limit // 1024} KiB: send fewer headers.")
        return None

    def write(self, data: bytes | bytearray) -> None:
        if not self.lost and self.transport is not None:
            self.transport.write(data)

    def hold(self, reason: str) -> None:
        """Stop reading from the socket until `release(reason)` (and every other hold is released)."""
        if not self._holds and self.transport is not None and not self.lost:
            self.transport.pause_reading()
        self._holds.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if not self._holds and self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def guard(self, hook: Callable[[], None]) -> None:
        """Run `hook`; if it raises, log the bug and let `on_error` end the connection."""
        try:
            hook()
        except Exception:
            log.exception("gateway: unexpected error; closing the connection")
            self.on_error()
