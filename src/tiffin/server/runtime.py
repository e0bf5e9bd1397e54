"""The part of `tiffin up` that runs deployments: builder, local backend, reconciler and gateway.

It starts with the API's lifespan and stops with it; a clean stop stops every replica, while a killed
Tiffin leaves them running for the next start to adopt.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tiffin.backends.ended import EndedReplica
from tiffin.backends.protocol import Backend
from tiffin.builder import Builder
from tiffin.core.clock import Clock
from tiffin.core.domain import DEFAULT_GATEWAY_PORT
from tiffin.core.errors import Unauthorized
from tiffin.gateway import Gateway, GatewaySettings
from tiffin.reconciler.loop import Reconciler, ReconcilerDeps
from tiffin.store.db import Database
from tiffin.store.tokens import authenticate


@dataclass
class Runtime:
    reconciler: Reconciler
    backend: Backend
    builder: Builder
    db: Database
    clock: Clock
    gateway_host: str
    interval_s: float
    gateway_port: int = DEFAULT_GATEWAY_PORT  # with a domain: where deployments are served by host name

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        loop, stop, nudge = asyncio.get_running_loop(), asyncio.Event(), asyncio.Event()

        def wake() -> None:  # on the backend's watcher thread
            loop.call_soon_threadsafe(nudge.set)

        self.backend.subscribe(wake)
        settings = GatewaySettings(shared_port=self.gateway_port)
        gateway = Gateway(self.gateway_host, self.check_token, settings, on_demand=lambda _: nudge.set())
        task = asyncio.create_task(self.reconciler.run(gateway, self.interval_s, stop, nudge))
        try:
            yield
        finally:
            stop.set()
            await task
            await gateway.close()
            await asyncio.to_thread(self.backend.close, True)
            self.reconciler.close()

    async def check_token(self, secret: str) -> frozenset[str] | None:
        return await asyncio.to_thread(self._scopes_of, secret)

    def _scopes_of(self, secret: str) -> frozenset[str] | None:
        try:
            with self.db.session() as session:
                return frozenset(authenticate(session, secret, self.clock.now()).scopes)
        except Unauthorized:
            return None

    def replica_log(self, replica_id: str, tail: int) -> str:
        return self.backend.read_log(replica_id, tail)

    def build_log(self, bento_tag: str, tail: int) -> str:
        return self.builder.read_log(bento_tag, tail)

    def ended_replicas(self, deployment: str) -> list[EndedReplica]:
        return self.backend.ended(deployment)


def make_runtime(
    deps: ReconcilerDeps, gateway_host: str, interval_s: float, gateway_port: int = DEFAULT_GATEWAY_PORT
) -> Runtime:
    return Runtime(
        Reconciler(deps),
        deps.backend,
        deps.builder,
        deps.db,
        deps.clock,
        gateway_host,
        interval_s,
        gateway_port,
    )
