"""The data plane: serves every deployment's URL and every Service's internal route from routing snapshots.

It runs inside the caller's event loop (the one uvicorn runs Tiffin's API in), so the embedded mode
stays one process. `apply()` swaps the whole compiled table in one assignment, so each request sees
one consistent snapshot; listeners follow the table (new ports opened, removed ports closed with their
in-flight requests allowed to finish), and requests held for a ready replica are decided again, oldest
first. A once-a-second sweep closes idle connections on both sides.
"""

import asyncio
import contextlib
from collections.abc import Callable

from tiffin.gateway.auth import TokenCache, TokenCheck
from tiffin.gateway.context import GatewayContext
from tiffin.gateway.holds import Holds
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
    ) -> None:
        """`on_demand((deployment, service))` is called (in the loop) when a request starts waiting for
        a Service that has no ready replica."""
        self._settings = settings or GatewaySettings()
        tokens = TokenCache(check_token, self._settings.token_ttl_s, self._settings.invalid_token_ttl_s)
        advertised = "127.0.0.1" if host in _WILDCARD_HOSTS else host
        self._holds = Holds()
        self._context = GatewayContext(
            RouteTable({}, {}), tokens, self._settings, advertised, self._holds, on_demand
        )
        self._listeners = Listeners(host, self._context)
        self._endpoints = Endpoints()
        self._sweeper: asyncio.Task[None] | None = None
        self._applying = asyncio.Lock()  # one apply at a time: each sees the listeners the last one left

    @property
    def ports(self) -> frozenset[int]:
        """The ports listening now (a port that could not be bound is missing until a later apply)."""
        return self._listeners.ports

    @property
    def waiting(self) -> int:
        """How many requests are held now, waiting for a ready replica of their Service."""
        return self._holds.waiting

    def traffic(self) -> Traffic:
        """Per replica URL: requests and errors so far, requests in flight now; per Service: requests
        waiting (call in the loop)."""
        context = self._context
        return Traffic(self._endpoints.traffic(), self._holds.stats(), dict(context.arrivals))

    async def apply(self, snapshot: RoutingSnapshot) -> None:
        """Serve `snapshot` from now on; raises ValueError, changing nothing, if it is inconsistent."""
        async with self._applying:
            table = compile_table(snapshot, self._endpoints, self._settings.balancing)
            self._context.table = table
            self._endpoints.replace(dict(table.endpoints))
            self._listeners.close_except(table.routes)
            self._holds.wake(table.routes)
            await self._listeners.open(table.routes)
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self) -> None:
        """Stop listening, answer held requests (503), let in-flight requests finish (up to the grace
        period), drop pooled connections."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._listeners.stop()
        self._holds.release()  # after stop(): the 503s close their connections, nothing new is held
        await self._listeners.finish(self._settings.close_grace_s)
        self._endpoints.close()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self._settings
        while True:
            await asyncio.sleep(settings.sweep_interval_s)
            now = loop.time()
            self._endpoints.expire_idle(now - settings.upstream_idle_timeout_s)
            self._listeners.close_idle_since(now - settings.client_idle_timeout_s)
