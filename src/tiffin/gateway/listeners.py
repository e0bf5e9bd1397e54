"""The gateway's listening sockets, one per port in the routing table, opened and closed by `apply()`.

Closing a port stops new connections at once; a request already in flight on it finishes, and its
connection closes afterwards instead of waiting for another request. A port that cannot be bound is
logged and tried again at the next `apply()`, so one busy port does not hold back every deployment.
"""

import asyncio
import logging
from collections.abc import Iterable

from tiffin.gateway.connection import ClientConnection
from tiffin.gateway.context import GatewayContext

log = logging.getLogger(__name__)

BACKLOG = 1024


class Listener:
    def __init__(self, port: int, context: GatewayContext) -> None:
        self.port = port
        self.closing = False
        self.connections: set[ClientConnection] = set()
        self._context = context
        self._server: asyncio.Server | None = None
        self._emptied = asyncio.Event()

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._accept, host, self.port, backlog=BACKLOG, reuse_address=True
        )

    def close(self) -> None:
        """Stop accepting; close idle connections now and busy ones after their current request."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_when_idle()

    async def finish(self, grace_s: float) -> None:
        """Wait up to `grace_s` for in-flight requests, then cut off what remains."""
        if self.connections:
            self._emptied.clear()
            try:
                await asyncio.wait_for(self._emptied.wait(), grace_s)
            except TimeoutError:
                for connection in list(self.connections):
                    connection.abort()

    def sweep(self, now: float) -> None:
        """Let each connection close itself if it idled or trickled past its deadline."""
        for connection in list(self.connections):
            connection.sweep(now)

    def forget(self, connection: ClientConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._emptied.set()

    def _accept(self) -> ClientConnection:
        connection = ClientConnection(self._context, self)
        self.connections.add(connection)
        return connection


class Listeners:
    def __init__(self, host: str, context: GatewayContext) -> None:
        self._host = host
        self._context = context
        self._open: dict[int, Listener] = {}
        self._closing: set[Listener] = set()

    @property
    def ports(self) -> frozenset[int]:
        return frozenset(self._open)

    async def open(self, ports: Iterable[int]) -> None:
        for port in ports:
            if port not in self._open:
                await self._open_one(port)

    def close_except(self, ports: Iterable[int]) -> None:
        keep = set(ports)
        for port in [port for port in self._open if port not in keep]:
            listener = self._open.pop(port)
            listener.close()
            self._closing.add(listener)

    def sweep(self, now: float) -> None:
        """Close connections past their deadlines; forget closed listeners once their last one ended."""
        for listener in [*self._open.values(), *self._closing]:
            listener.sweep(now)
        self._closing = {listener for listener in self._closing if listener.connections}

    def stop(self) -> None:
        """Stop accepting on every port: idle connections close now, busy ones after their request."""
        self._closing.update(self._open.values())
        self._open.clear()
        for listener in self._closing:
            listener.close()

    async def finish(self, grace_s: float) -> None:
        """After `stop()`: wait up to `grace_s` for in-flight requests, then cut off what remains."""
        await asyncio.gather(*(listener.finish(grace_s) for listener in self._closing))

    async def _open_one(self, port: int) -> None:
        listener = Listener(port, self._context)
        try:
            await listener.open(self._host)
        except OSError as error:
            log.error(
                "gateway: cannot listen on %s:%d (%s); will retry at the next apply", self._host, port, error
            )
            return
        self._open[port] = listener
