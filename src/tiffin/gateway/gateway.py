"""The data plane: serves every deployment's URL and every Service's internal route from routing snapshots.

It runs inside the caller's event loop (the one uvicorn runs Tiffin's API in), so the embedded mode
stays one process. `apply()` takes a snapshot only when its version is newer than the one in service,
and swaps the whole compiled table in one assignment, so each request sees one consistent snapshot;
listeners follow the table (new ports opened, removed ports closed with their in-flight requests
allowed to finish; the shared port, which routes by host name, is open while the snapshot has a
domain), and the activator hands requests waiting for a replica the room the new table has, oldest
first. A once-a-second sweep closes idle connections on both sides and answers 408 to
request heads that trickle in.
"""

import asyncio
import contextlib
from collections.abc import Callable

from tiffin.gateway.activator import Activator, LoopClock
from tiffin.gateway.auth import TokenCache, TokenCheck
from tiffin.gateway.balancer import Balancers
from tiffin.gateway.context import GatewayContext
from tiffin.gateway.listeners import Listeners
from tiffin.gateway.settings import GatewaySettings
from tiffin.gateway.table import RouteTable, compile_table
from tiffin.gateway.upstream import Endpoints
from tiffin.routing.snapshot import RoutingSnapshot
from tiffin.routing.traffic import Traffic

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class Gateway:
    """Usage, inside a running event loop: `gateway = Gateway("127.0.0.1", check_token)`, then
    `await gateway.apply(snapshot)` whenever the reconciler publishes, and `await gateway.close()`."""

    def __init__(
        self,
        host: str,
        check_token: TokenCheck,
        settings: GatewaySettings | None = None,
        on_demand: Callable[[tuple[str, str]], None] = lambda key: None,
        clock: LoopClock | None = None,
    ) -> None:
        """`on_demand((deployment, service))` is called (in the loop) when a request starts waiting for
        a Service that has no ready replica; `clock` defaults to the running loop."""
        self._settings = settings or GatewaySettings()
        self._clock = clock or asyncio.get_running_loop()
        settings = self._settings
        tokens = TokenCache(check_token, settings.token_ttl_s, settings.invalid_token_ttl_s, self._clock.time)
        advertised = "127.0.0.1" if host in _WILDCARD_HOSTS else host
        self._activator = Activator(self._clock, on_demand)
        self._context = GatewayContext(
            RouteTable({}, {}, -1), tokens, self._settings, advertised, self._activator, self._clock
        )
        self._listeners = Listeners(host, self._context)
        self._endpoints = Endpoints()
        self._balancers = Balancers(self._settings.balancing)
        self._sweeper: asyncio.Task[None] | None = None
        self._applying = asyncio.Lock()  # one apply at a time: each sees the listeners the last one left

    @property
    def ports(self) -> frozenset[int]:
        """The ports listening now (a port that could not be bound is missing until a later apply)."""
        return self._listeners.ports

    @property
    def version(self) -> int:
        """The version of the snapshot in service (-1 before the first)."""
        return self._context.table.version

    @property
    def waiting(self) -> int:
        """How many requests wait now for a replica with room."""
        return self._activator.waiting

    def traffic(self) -> Traffic:
        """Per replica URL: requests and errors so far, requests in flight now; per Service: requests
        waiting and requests that arrived (call in the loop)."""
        activator = self._activator
        return Traffic(self._endpoints.traffic(), activator.stats(), dict(activator.arrivals))

    async def counts(self) -> Traffic:
        """`traffic()`, for callers that may as well be reading it from elsewhere (the reconciler)."""
        return self.traffic()

    async def apply(self, snapshot: RoutingSnapshot) -> None:
        """Serve `snapshot` from now on, unless its version is not newer than the one in service; raises
        ValueError, changing nothing, if it is inconsistent."""
        async with self._applying:
            if 0 < snapshot.version <= self._context.table.version:
                return  # not newer than the table in service (0: unversioned, always applied)
            settings = self._settings
            table = compile_table(snapshot, self._endpoints, self._balancers, settings.shared_port)
            self._context.table = table
            self._endpoints.replace(dict(table.endpoints))
            self._listeners.close_except(table.ports)
            self._activator.update(table.services)
            await self._listeners.open(table.ports)
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self) -> None:
        """Stop listening, refuse waiting requests (503), let in-flight requests finish (up to the grace
        period), drop kept connections."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._listeners.stop()
        self._activator.close()  # after stop(): the 503s close their connections, nothing new waits
        await self._listeners.finish(self._settings.close_grace_s)
        self._endpoints.close()

    async def _sweep(self) -> None:
        settings = self._settings
        while True:
            await asyncio.sleep(settings.sweep_interval_s)
            now = self._clock.time()
            self._endpoints.expire_idle(now - settings.upstream_idle_timeout_s)
            self._listeners.sweep(now)
