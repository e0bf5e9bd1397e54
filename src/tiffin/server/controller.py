"""`tiffin controller`: the reconciler of a scaled-out Tiffin, leading or waiting to lead.

Two may run; the one holding the leader lock (a PostgreSQL advisory lock) reconciles, the other checks
every second whether the lock is free and takes over when the leader dies. The leader publishes routes
to, and reads traffic from, the gateways through the store (`reconciler.publishing`). It adopts the
replicas the previous leader left (they keep serving meanwhile), and stopping it leaves them running
for the next leader; a leader that loses its lock stops reconciling at once.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tiffin.core.clock import Clock
from tiffin.core.settings import Settings
from tiffin.reconciler.loop import Reconciler, ReconcilerDeps
from tiffin.reconciler.publishing import PublishedGateways
from tiffin.server.wiring import open_store, reconciler_deps
from tiffin.store.leader import LeaderLock, leader_lock

log = logging.getLogger("tiffin.controller")
STANDBY_POLL_S = 1.0  # how often a standby asks for the lock, and the leader checks it still holds it


@dataclass
class Controller:
    make_deps: Callable[[], ReconcilerDeps]  # called once leading: the backend adopts what runs then
    lock: LeaderLock
    interval_s: float

    async def run(self, stop: asyncio.Event) -> None:
        """Wait to lead, then reconcile until `stop` is set or the lock is lost."""
        if not await self._lead(stop):
            return
        log.info("Leading: this controller reconciles from now on.")
        deps = await asyncio.to_thread(self.make_deps)
        halt, lost = asyncio.Event(), asyncio.Event()
        guards = [
            asyncio.create_task(self._watch_lock(halt, lost)),
            asyncio.create_task(_relay(stop, halt)),
        ]
        try:
            await self._reconcile(deps, halt)
        finally:
            for guard in guards:
                guard.cancel()
            await asyncio.to_thread(deps.backend.close, False)  # replicas stay for the next leader
            self.lock.release()
        if lost.is_set():
            raise LeadershipLost("The controller lost its leader lock (its database connection broke).")

    async def _lead(self, stop: asyncio.Event) -> bool:
        waiting_said = False
        while not stop.is_set():
            if await asyncio.to_thread(self.lock.try_acquire):
                return True
            if not waiting_said:
                log.info("Standing by: another controller leads; taking over when it stops.")
                waiting_said = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STANDBY_POLL_S)
        return False

    async def _reconcile(self, deps: ReconcilerDeps, stop: asyncio.Event) -> None:
        loop, nudge = asyncio.get_running_loop(), asyncio.Event()

        def wake() -> None:  # on the backend's watcher thread
            loop.call_soon_threadsafe(nudge.set)

        deps.backend.subscribe(wake)
        reconciler = Reconciler(deps)
        try:
            await reconciler.run(PublishedGateways(deps.db, deps.clock), self.interval_s, stop, nudge)
        finally:
            reconciler.close()

    async def _watch_lock(self, halt: asyncio.Event, lost: asyncio.Event) -> None:
        while await asyncio.to_thread(self.lock.held):
            await asyncio.sleep(STANDBY_POLL_S)
        log.error("The leader lock is lost: stopping reconciliation.")
        lost.set()
        halt.set()


class LeadershipLost(Exception):
    pass


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def build_controller(settings: Settings, clock: Clock) -> Controller:
    db, context = open_store(settings, clock)

    def make_deps() -> ReconcilerDeps:
        return reconciler_deps(
            settings, context, settings.api_url, settings.gateway_host, ray_address=settings.ray_address
        )

    return Controller(
        make_deps, leader_lock(db, settings.home / "controller.lock"), settings.reconcile_interval_s
    )
