"""`tiffin gateway`: one of any number of gateways of a scaled-out Tiffin, fed through the store.

Each gateway polls the version of the routes the leading controller published and loads them when it
grows; it sends a heartbeat with what it counted every second (at once when a request starts waiting
for a Service with no replica, so a Service at zero wakes without delay). The queue capacity of each
Service is the cluster's: each gateway takes its share, divided by the gateways alive, as Knative's
activators do. Tokens are checked against the store like the embedded gateway does.
"""

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

from tiffin.core.clock import Clock
from tiffin.core.errors import Unauthorized
from tiffin.core.settings import Settings
from tiffin.gateway import Gateway, GatewaySettings
from tiffin.reconciler.publishing import GATEWAY_ALIVE_S
from tiffin.routing.codec import snapshot_from_json, traffic_to_json
from tiffin.routing.snapshot import RoutingSnapshot
from tiffin.server.wiring import open_database
from tiffin.store.cluster import (
    forget_gateway,
    forget_gateways_before,
    heartbeat,
    live_gateways,
    published_routes,
    routes_version,
)
from tiffin.store.db import Database
from tiffin.store.tokens import authenticate

log = logging.getLogger("tiffin.gateway")
POLL_S = 0.25  # how often the published version is checked
HEARTBEAT_S = 1.0
FORGET_AFTER = timedelta(hours=1)  # rows of gateways killed without saying so are dropped after this


@dataclass(frozen=True)
class Applied:
    """What this gateway serves: the published version, and the gateways alive it shared capacity with."""

    version: int
    gateways: int


class GatewayProcess:
    def __init__(
        self, db: Database, clock: Clock, host: str, gateway_id: str, settings: GatewaySettings
    ) -> None:
        self._db, self._clock, self._host, self._id = db, clock, host, gateway_id
        self._settings = settings
        self._wanted = asyncio.Event()  # a request waits for a Service with no replica: beat now

    async def run(self, stop: asyncio.Event) -> None:
        gateway = Gateway(self._host, self._check_token, self._settings, lambda _key: self._wanted.set())
        applied = Applied(-1, 0)
        last_beat = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                applied = await self._follow(gateway, applied)
                if self._wanted.is_set() or loop.time() - last_beat >= HEARTBEAT_S:
                    self._wanted.clear()
                    await asyncio.to_thread(self._beat, traffic_to_json(gateway.traffic()))
                    last_beat = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(stop, self._wanted), POLL_S)
        finally:
            await gateway.close()
            await asyncio.to_thread(self._leave)

    async def _follow(self, gateway: Gateway, applied: Applied) -> Applied:
        """Load the published routes when their version or the number of live gateways changed."""
        version, alive = await asyncio.to_thread(self._published_state)
        if (version, alive) == (applied.version, applied.gateways):
            return applied
        published = await asyncio.to_thread(self._published)
        if published is None:
            return applied
        await gateway.apply(share(published, alive))
        log.info("Serving routes version %d (capacity shared by %d gateways).", published.version, alive)
        return Applied(published.version, alive)

    def _published_state(self) -> tuple[int, int]:
        since = self._clock.now() - timedelta(seconds=GATEWAY_ALIVE_S)
        with self._db.session() as session:
            alive = {gateway_id for gateway_id, _ in live_gateways(session, since)} | {self._id}
            return routes_version(session), len(alive)

    def _published(self) -> RoutingSnapshot | None:
        with self._db.session() as session:
            found = published_routes(session)
        return snapshot_from_json(found[1]) if found is not None else None

    def _beat(self, traffic: dict[str, object]) -> None:
        now = self._clock.now()
        with self._db.session() as session:
            heartbeat(session, self._id, self._host, traffic, now)
            forget_gateways_before(session, now - FORGET_AFTER)

    def _leave(self) -> None:
        with self._db.session() as session:
            forget_gateway(session, self._id)

    async def _check_token(self, secret: str) -> frozenset[str] | None:
        return await asyncio.to_thread(self._scopes_of, secret)

    def _scopes_of(self, secret: str) -> frozenset[str] | None:
        try:
            with self._db.session() as session:
                return frozenset(authenticate(session, secret, self._clock.now()).scopes)
        except Unauthorized:
            return None


def share(snapshot: RoutingSnapshot, gateways: int) -> RoutingSnapshot:
    """The snapshot with each queue's capacity divided among `gateways` (rounded up, at least 1), served
    as given (version 0: this process decides when to apply)."""
    deployments = {
        name: dataclasses.replace(
            route,
            services={
                service_name: dataclasses.replace(
                    service,
                    admission=dataclasses.replace(
                        service.admission,
                        queue_capacity=_part(service.admission.queue_capacity, gateways),
                    ),
                )
                for service_name, service in route.services.items()
            },
        )
        for name, route in snapshot.deployments.items()
    }
    return dataclasses.replace(snapshot, deployments=deployments, version=0)


def _part(capacity: int, gateways: int) -> int:
    return capacity if capacity == 0 or gateways <= 1 else max(1, math.ceil(capacity / gateways))


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    waits = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def build_gateway(settings: Settings, clock: Clock, host: str) -> GatewayProcess:
    db = open_database(settings)
    gateway_id = f"{socket.gethostname()}-{host}-{os.getpid()}"
    return GatewayProcess(db, clock, host, gateway_id, GatewaySettings(shared_port=settings.gateway_port))
