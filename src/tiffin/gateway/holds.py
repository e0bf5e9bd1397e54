"""Requests waiting for a replica of their Service: none is ready yet, or (with the external queue) every
ready one is at its `max_concurrency`.

Rather than fail such a request, the gateway parks it here: its head is parsed, whatever body already
arrived stays in the connection's buffer, and nothing more is read than for any request in flight. Each
Service (deployment, Service name) keeps its waiters in arrival order, whichever port they came in on,
with one timer each for its deadline. Every `apply()` hands each waiter, oldest first, the route its
port serves now, and the waiter decides again (forwards, answers, or waits on in its place). When a
request to a queued Service ends, `free()` hands the oldest waiters the freed capacity. No polling:
only an `apply()`, a finished request, a waiter's timer, its client going away, or `close()` ends a wait.
"""

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tiffin.gateway.table import Route
from tiffin.routing.traffic import QueueStats

ServiceKey = tuple[str, str]  # (deployment, Service)


class Waiter(Protocol):
    """A request waiting for a replica (at most one per client connection)."""

    def on_route(self, route: Route | None) -> None:
        """Decide again with the route its port serves now (None when the port is gone)."""

    def on_expired(self) -> None:
        """Its deadline passed without a replica to serve it."""


@dataclass(slots=True)
class _Wait:
    port: int
    since: float
    timer: asyncio.TimerHandle


class Holds:
    def __init__(self) -> None:
        self._services: dict[ServiceKey, dict[Waiter, _Wait]] = {}  # insertion order: arrival order

    @property
    def waiting(self) -> int:
        """How many requests wait now."""
        return sum(len(waiters) for waiters in self._services.values())

    def count(self, key: ServiceKey) -> int:
        waiters = self._services.get(key)
        return len(waiters) if waiters else 0

    def stats(self) -> dict[ServiceKey, QueueStats]:
        """Per Service with waiters: how many, and how long the oldest has waited."""
        loop = asyncio.get_running_loop()
        return {
            key: QueueStats(len(waiters), loop.time() - next(iter(waiters.values())).since)
            for key, waiters in self._services.items()
            if waiters
        }

    def add(self, key: ServiceKey, port: int, waiter: Waiter, deadline: float) -> None:
        """Hold `waiter` at the back of its Service's line until it is handed a route or `deadline`
        (on the loop's clock) passes."""
        loop = asyncio.get_running_loop()
        timer = loop.call_at(deadline, self._expire, key, waiter)
        self._services.setdefault(key, {})[waiter] = _Wait(port, loop.time(), timer)

    def drop(self, key: ServiceKey, waiter: Waiter) -> None:
        """Forget `waiter` (its client went away); nothing is called on it."""
        waiters = self._services.get(key)
        wait = waiters.pop(waiter, None) if waiters is not None else None
        if wait is not None:
            wait.timer.cancel()
        if waiters is not None and not waiters:
            del self._services[key]

    def wake(self, routes: Mapping[int, Route]) -> None:
        """After an `apply()`: each waiter, oldest first, gets the route its port serves now."""
        for key in list(self._services):
            waiters = self._services.pop(key)  # a waiter that must wait on is added again, in order
            for waiter, wait in waiters.items():
                wait.timer.cancel()
                waiter.on_route(routes.get(wait.port))

    def free(self, key: ServiceKey, routes: Mapping[int, Route], has_room: Callable[[Route], bool]) -> None:
        """A request to this Service ended: the oldest waiters take the room there is, in order."""
        waiters = self._services.get(key)
        while waiters:
            waiter, wait = next(iter(waiters.items()))
            route = routes.get(wait.port)
            if route is not None and not has_room(route):
                return
            del waiters[waiter]
            wait.timer.cancel()
            waiter.on_route(route)
        self._services.pop(key, None)

    def release(self) -> None:
        """The gateway is closing: every waiter hears that its port is gone."""
        self.wake({})

    def _expire(self, key: ServiceKey, waiter: Waiter) -> None:
        waiters = self._services.get(key)
        if waiters is None or waiters.pop(waiter, None) is None:
            return
        if not waiters:
            del self._services[key]
        waiter.on_expired()
