"""Requests held while their Service has no ready replica, until an `apply()` publishes one or time runs out.

During a Recreate rollout (old replicas stopped before new ones start) or while a deployment starts, a
Service briefly has no ready replica. Rather than fail such a request, the gateway parks it here: its
head is parsed, whatever body already arrived stays in the connection's buffer, and nothing more is
read than for any request in flight. Each port keeps its waiters in arrival order with one timer each
for the route's bound (`hold_s`). Every `apply()` hands each waiter, oldest first, the route its port
serves now, and the waiter decides again (forwards, answers, or waits on until its own deadline). No
polling: only an `apply()`, a waiter's timer, its client going away, or `close()` ends a wait.
"""

import asyncio
from collections.abc import Mapping
from typing import Protocol

from tiffin.gateway.table import Route


class Waiter(Protocol):
    """A request waiting for a ready replica (at most one per client connection)."""

    def on_route(self, route: Route | None) -> None:
        """A new table was applied: the route its port serves now, None when the port is gone."""

    def on_expired(self) -> None:
        """Its deadline passed without a ready replica."""


class Holds:
    def __init__(self) -> None:
        self._ports: dict[int, dict[Waiter, asyncio.TimerHandle]] = {}  # insertion order: arrival order

    @property
    def waiting(self) -> int:
        """How many requests wait for a ready replica now."""
        return sum(len(waiters) for waiters in self._ports.values())

    def add(self, port: int, waiter: Waiter, deadline: float) -> None:
        """Hold `waiter` until the next `wake()` or until `deadline` (on the loop's clock)."""
        timer = asyncio.get_running_loop().call_at(deadline, self._expire, port, waiter)
        self._ports.setdefault(port, {})[waiter] = timer

    def drop(self, port: int, waiter: Waiter) -> None:
        """Forget `waiter` (its client went away); nothing is called on it."""
        waiters = self._ports.get(port)
        timer = waiters.pop(waiter, None) if waiters is not None else None
        if timer is not None:
            timer.cancel()
        if waiters is not None and not waiters:
            del self._ports[port]

    def wake(self, routes: Mapping[int, Route]) -> None:
        """After an `apply()`: each waiter, oldest first, gets the route its port serves now."""
        for port in list(self._ports):
            waiters = self._ports.pop(port)  # a waiter that must wait on is added again, in order
            route = routes.get(port)
            for waiter, timer in waiters.items():
                timer.cancel()
                waiter.on_route(route)

    def release(self) -> None:
        """The gateway is closing: every waiter hears that its port is gone."""
        self.wake({})

    def _expire(self, port: int, waiter: Waiter) -> None:
        waiters = self._ports.get(port)
        if waiters is None or waiters.pop(waiter, None) is None:
            return
        if not waiters:
            del self._ports[port]
        waiter.on_expired()
