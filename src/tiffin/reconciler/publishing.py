"""The gateways of a scaled-out Tiffin, as the reconcile loop sees them: through the store.

The leading controller does not talk to gateways: it publishes each new routing snapshot in the store
(numbered after the last one published there, whichever controller published it, so a controller that
takes over never goes back in versions), and reads what every live gateway counted from their
heartbeats, summed as if one gateway had counted it all.
"""

import asyncio
from dataclasses import replace
from datetime import timedelta

from tiffin.core.clock import Clock
from tiffin.routing.codec import snapshot_to_json, traffic_from_json
from tiffin.routing.snapshot import RoutingSnapshot
from tiffin.routing.traffic import Traffic, merge
from tiffin.store.cluster import live_gateways, publish_routes, routes_version
from tiffin.store.db import Database

GATEWAY_ALIVE_S = 5.0  # a gateway whose heartbeat is older is taken for gone


class PublishedGateways:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db, self._clock = db, clock

    async def apply(self, snapshot: RoutingSnapshot) -> None:
        await asyncio.to_thread(self._publish, snapshot)

    async def counts(self) -> Traffic:
        return await asyncio.to_thread(self._read_counts)

    def _publish(self, snapshot: RoutingSnapshot) -> None:
        with self._db.session() as session:
            version = routes_version(session) + 1
            publish_routes(
                session, version, snapshot_to_json(replace(snapshot, version=version)), self._clock.now()
            )

    def _read_counts(self) -> Traffic:
        since = self._clock.now() - timedelta(seconds=GATEWAY_ALIVE_S)
        with self._db.session() as session:
            counted = live_gateways(session, since)
        return merge([traffic_from_json(traffic) for _, traffic in counted])
