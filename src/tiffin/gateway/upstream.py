"""Replicas as the gateway sees them: an address, requests counted, connections kept open between requests.

Opening a TCP connection per request would double the gateway's system calls and add a round trip, so
each endpoint keeps the connections its finished exchanges leave behind and hands out the most recently
used one first. Idle connections are closed before the replica's own keep-alive timeout (uvicorn: 5 s)
could close them under a request. Endpoint objects outlive routing snapshots, so pools and counts
survive an `apply()` that keeps the replica.
"""

import asyncio
from typing import Protocol
from urllib.parse import urlsplit

from tiffin.gateway.peer import Peer
from tiffin.routing.traffic import ReplicaTraffic

MAX_IDLE_PER_ENDPOINT = 256


class Handler(Protocol):
    """What an exchange hears from the replica connection it is using."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_eof(self) -> None: ...

    def upstream_drained(self) -> None: ...

    def upstream_failed(self) -> None: ...


class Upstream(Peer):
    """A connection to a replica; while an exchange uses it, everything it hears goes to that exchange."""

    def __init__(self) -> None:
        super().__init__()
        self.handler: Handler | None = None
        self.closed_by_peer = False

    def on_data(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.upstream_data(data)
        else:
            self.abort()  # a replica speaking out of turn on an idle connection: never reuse it

    def on_eof(self) -> None:
        self.closed_by_peer = True
        if self.handler is not None:
            self.handler.upstream_eof()
        else:
            self.close()  # an idle connection the replica closed (keep-alive timeout, restart)

    def on_lost(self) -> None:
        if not self.closed_by_peer:
            self.closed_by_peer = True
            if self.handler is not None:
                self.handler.upstream_eof()

    def on_drained(self) -> None:
        if self.handler is not None:
            self.handler.upstream_drained()

    def on_failure(self) -> None:
        self.abort()
        if self.handler is not None:
            self.handler.upstream_failed()

    def reusable(self) -> bool:
        """Whether an idle connection may carry another request."""
        return not self.closed_by_peer and not self.lost and self.transport is not None


class ConnectFailed(Exception):
    """No connection could be opened (refused, unreachable, timed out): nothing was sent."""


class Endpoint:
    def __init__(self, url: str) -> None:
        self.url = url
        self.host, self.port = parse_endpoint(url)
        self.in_flight = 0
        self.requests = 0  # exchanges that ended here, answered or failed
        self.errors = 0  # 5xx answers and failures
        self.retired = False
        self._idle: list[tuple[Upstream, float]] = []  # oldest first; taken from the end

    def count(self, status: int) -> None:
        """One exchange ended with `status` (a failure counts as 502)."""
        self.requests += 1
        if status >= 500:
            self.errors += 1

    def take_idle(self) -> Upstream | None:
        while self._idle:
            conn, _ = self._idle.pop()
            if conn.reusable():
                return conn
            conn.close()
        return None

    async def connect(self, timeout: float) -> Upstream:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(Upstream, self.host, self.port), timeout)
        except (OSError, TimeoutError) as error:
            raise ConnectFailed(f"{self.url}: {error or type(error).__name__}") from error
        return conn

    def release(self, conn: Upstream, now: float) -> None:
        """Keep a connection whose last exchange ended cleanly, for the next request."""
        conn.handler = None
        if self.retired or len(self._idle) >= MAX_IDLE_PER_ENDPOINT or not conn.reusable():
            conn.close()
            return
        self._idle.append((conn, now))

    def expire(self, idle_before: float) -> None:
        fresh = [(conn, since) for conn, since in self._idle if since >= idle_before]
        for conn, since in self._idle:
            if since < idle_before:
                conn.close()
        self._idle = fresh

    def retire(self) -> None:
        """The replica left the routing snapshot: close idle connections, keep none from now on."""
        self.retired = True
        self.expire(float("inf"))


def parse_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "tcp") or not parts.hostname or parts.port is None:
        raise ValueError(f"Endpoint {url!r} is not an http://host:port URL.")
    return parts.hostname, parts.port


class Endpoints:
    """The registry of endpoint objects, keyed by URL, shared by successive routing tables."""

    def __init__(self) -> None:
        self._by_url: dict[str, Endpoint] = {}

    def get(self, url: str) -> Endpoint:
        endpoint = self._by_url.get(url)
        if endpoint is None or endpoint.retired:
            endpoint = Endpoint(url)
        return endpoint

    def replace(self, endpoints: dict[str, Endpoint]) -> None:
        """Adopt the endpoints of a new table; retire those it no longer uses."""
        for url, endpoint in self._by_url.items():
            if endpoints.get(url) is not endpoint:
                endpoint.retire()
        self._by_url = dict(endpoints)

    def traffic(self) -> dict[str, ReplicaTraffic]:
        return {url: ReplicaTraffic(e.requests, e.errors, e.in_flight) for url, e in self._by_url.items()}

    def expire_idle(self, idle_before: float) -> None:
        for endpoint in self._by_url.values():
            endpoint.expire(idle_before)

    def close(self) -> None:
        self.replace({})
