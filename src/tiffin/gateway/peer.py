"""One end of a proxied exchange: a TCP connection and its flow control, on asyncio's protocol callbacks.

The gateway is event-driven: bytes are handled in the callbacks that deliver them, not in a coroutine
woken afterwards, which saves a trip round the event loop per read (most of a Python proxy's cost per
request). Reading is paused for named reasons (`pause_reading("upload")`: the replica's side is full)
and resumes when none is left, so two reasons never undo each other. Whatever a subclass's hook
raises is logged and ends the connection, instead of escaping into asyncio.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import cast

log = logging.getLogger("tiffin.gateway")
WRITE_BUFFER_BYTES = 512 * 1024


class Peer(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False  # the connection is gone: writes are dropped
        self.write_paused = False  # the kernel's send buffer is full: stop producing for it
        self._paused_by: set[str] = set()

    # asyncio's callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # A larger send buffer than asyncio's 64 KiB: a body in flight pauses and resumes the other
        # side's reading far less often, at a bounded cost per connection.
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
        self._guard(self.on_made)

    def data_received(self, data: bytes) -> None:
        try:
            self.on_data(data)
        except Exception:
            self._failed()

    def eof_received(self) -> bool:
        self._guard(self.on_eof)
        return True  # keep the write side open: a half-closed peer may still read an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._guard(self.on_lost)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._guard(self.on_drained)

    # hooks

    def on_made(self) -> None:
        pass

    def on_data(self, data: bytes) -> None:
        pass

    def on_eof(self) -> None:
        """The peer will send nothing more (it may still read)."""

    def on_lost(self) -> None:
        """The connection is gone; called once, last."""

    def on_drained(self) -> None:
        """What was written has gone out: producing for this connection may go on."""

    def on_failure(self) -> None:
        """A hook raised: the bug is logged; end what depends on this connection."""
        self.abort()

    # what the gateway uses

    def write(self, data: bytes) -> None:
        if not self.lost and self.transport is not None:
            self.transport.write(data)

    def pause_reading(self, reason: str) -> None:
        """Read nothing until `resume_reading(reason)`, and every other reason is resumed too."""
        if not self._paused_by and self.transport is not None and not self.lost:
            self.transport.pause_reading()
        self._paused_by.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason not in self._paused_by:
            return
        self._paused_by.discard(reason)
        if not self._paused_by and self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after what was written has been sent."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping anything unsent (the peer sees a reset)."""
        if self.transport is not None:
            self.transport.abort()

    def _guard(self, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:
            self._failed()

    def _failed(self) -> None:
        log.exception("gateway: unexpected error; closing the connection")
        try:
            self.on_failure()
        except Exception:
            log.exception("gateway: unexpected error while closing a connection")
            self.abort()
