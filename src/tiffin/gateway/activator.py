"""The activator: may this request go to a replica now, must it wait, or is it refused? One call decides.

In the spirit of Knative's throttler, everything about admission lives here: each replica's capacity
(`max_concurrency` behind the queue), the Service's first-in first-out line (bounded by
`queue_capacity`, then 429), holding requests while a Service has no ready replica (a cold start, a
Recreate rollout; bounded by `hold_s`, then 503), the announcement that a Service at zero is wanted,
and the requests in flight per replica. `acquire()` answers with a `Slot` (go now; call `release()`
when the exchange ends), None (the waiter is in line and will hear `on_slot` or `on_refused`), or a
`Reply` to send. A new routing table (`update()`) and every released slot hand room to the oldest
waiters. Waiters are kept by the Service they wait for, not by how they arrived (a deployment's port,
the shared port with a host name, an internal port), so each new table tells them where that Service
stands now. Time is the event loop's clock, injected, so tests run on a fake one.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tiffin.gateway.replies import Reply, message
from tiffin.gateway.table import Route, ServiceTarget
from tiffin.gateway.upstream import Endpoint
from tiffin.routing.traffic import QueueStats

ServiceKey = tuple[str, str]  # (deployment, Service)
TERMINATED = "terminated"


class Timer(Protocol):
    def cancel(self) -> None: ...


class LoopClock(Protocol):
    """The part of an asyncio event loop the activator uses (a fake one in tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Timer: ...


class Waiter(Protocol):
    """A request in a Service's line."""

    def on_slot(self, slot: "Slot") -> None:
        """A replica has room for it now."""

    def on_refused(self, reply: Reply) -> None:
        """It may not wait any longer: its deadline passed, or its route went away."""


@dataclass(slots=True, eq=False)
class Slot:
    """Room on one replica for one request, held until `release()`."""

    endpoint: Endpoint
    target: ServiceTarget
    activator: "Activator"
    released: bool = False

    def release(self) -> None:
        self.activator.release(self)

    def elsewhere(self, tried: list[Endpoint]) -> "Slot | None":
        """Room on another replica (none of `tried`) after this one refused the connection."""
        return self.activator.elsewhere(self, tried)


@dataclass(slots=True)
class _InLine:
    since: float
    timer: Timer


class Activator:
    def __init__(self, clock: LoopClock, on_demand: Callable[[ServiceKey], None] = lambda key: None) -> None:
        """`on_demand(key)` hears (once per waiting request) that a Service with no replica is wanted."""
        self.clock = clock
        self.on_demand = on_demand
        self.routes: Mapping[ServiceKey, Route] = {}  # each Service's route in the table in service
        self.arrivals: dict[ServiceKey, int] = {}  # requests so far, by Service
        self._lines: dict[ServiceKey, dict[Waiter, _InLine]] = {}  # each in arrival order

    def acquire(self, route: Route, waiter: Waiter) -> "Slot | Reply | None":
        """Admit a request for `route`'s Service (see the module docstring)."""
        target = route.target
        key, rules = target.key, target.admission
        self.arrivals[key] = self.arrivals.get(key, 0) + 1
        line = self._lines.get(key)
        if not (line and rules.queue) and (slot := self._room(target)) is not None:
            return slot
        if rules.queue and rules.queue_capacity and line and len(line) >= rules.queue_capacity:
            return _queue_full(route, len(line))
        if rules.hold_s <= 0:
            return not_ready(route)
        now = self.clock.time()
        timer = self.clock.call_at(now + rules.hold_s, self._expire, key, waiter)
        self._lines.setdefault(key, {})[waiter] = _InLine(now, timer)
        if not target.endpoints:
            self.on_demand(key)
        return None

    def update(self, routes: Mapping[ServiceKey, Route]) -> None:
        """A new routing table (a route of each Service, `RouteTable.services`): every line hands its
        oldest waiters the room there is now."""
        self.routes = routes
        for key in list(self._lines):
            self._serve(key)

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        slot.endpoint.in_flight -= 1
        if slot.target.key in self._lines:
            self._serve(slot.target.key)

    def elsewhere(self, slot: Slot, tried: list[Endpoint]) -> Slot | None:
        self.release(slot)
        endpoint = slot.target.balancer.pick(tried)
        return self._take(endpoint, slot.target) if endpoint is not None else None

    def cancel(self, key: ServiceKey, waiter: Waiter) -> None:
        """Take `waiter` out of line (its client went away); nothing is called on it."""
        line = self._lines.get(key)
        place = line.pop(waiter, None) if line is not None else None
        if place is not None:
            place.timer.cancel()
        if line is not None and not line:
            del self._lines[key]

    def close(self) -> None:
        """The gateway is closing: every waiter is refused."""
        self.update({})

    @property
    def waiting(self) -> int:
        return sum(len(line) for line in self._lines.values())

    def stats(self) -> dict[ServiceKey, QueueStats]:
        """Per Service with a line: how many wait, and how long the oldest has waited."""
        now = self.clock.time()
        return {
            key: QueueStats(len(line), now - next(iter(line.values())).since)
            for key, line in self._lines.items()
            if line
        }

    def _serve(self, key: ServiceKey) -> None:
        """Hand the oldest waiters of one Service the room there is, in order; refuse them all if the
        Service is served no more."""
        line = self._lines.get(key, {})
        route = self.routes.get(key)
        refusal = _gone(route, key)
        while line:
            waiter, place = next(iter(line.items()))
            slot = self._room(route.target) if route is not None and refusal is None else None
            if refusal is None and slot is None:
                return
            del line[waiter]
            place.timer.cancel()
            if slot is not None:
                waiter.on_slot(slot)
            else:
                assert refusal is not None
                waiter.on_refused(refusal)
        self._lines.pop(key, None)

    def _room(self, target: ServiceTarget) -> Slot | None:
        cap = target.admission.max_concurrency if target.admission.queue else 0
        endpoint = target.balancer.pick((), cap)
        return self._take(endpoint, target) if endpoint is not None else None

    def _take(self, endpoint: Endpoint, target: ServiceTarget) -> Slot:
        endpoint.in_flight += 1
        return Slot(endpoint, target, self)

    def _expire(self, key: ServiceKey, waiter: Waiter) -> None:
        line = self._lines.get(key)
        place = line.pop(waiter, None) if line is not None else None
        if line is not None and not line:
            del self._lines[key]
        if place is not None:
            route = self.routes.get(key)
            waiter.on_refused(waited_too_long(route) if route is not None else _closed(key))


def _gone(route: Route | None, key: ServiceKey) -> Reply | None:
    """Why a waiter for Service `key` can wait no longer, if it cannot."""
    if route is None:
        return _closed(key)
    if route.deployment.status == TERMINATED:
        return terminated(route)
    return None


def not_ready(route: Route) -> Reply:
    """503 for a Service with no replica to serve a request (now, or within its `hold_s`)."""
    deployment = route.deployment
    text = deployment.message or (
        f"Deployment {deployment.name} has no ready replica of Service {route.target.service} yet:"
        " retry shortly."
    )
    return message(503, text, ("retry-after", "1"))


def waited_too_long(route: Route) -> Reply:
    """503 for a request whose wait in the Service's line outlasted its bound (`hold_s`)."""
    if not route.target.endpoints:
        return not_ready(route)
    return message(
        503,
        f"Deployment {route.deployment.name}: every replica of Service {route.target.service} stayed busy"
        f" for {route.target.admission.hold_s:g} s: retry shortly.",
        ("retry-after", "1"),
    )


def terminated(route: Route) -> Reply:
    return message(503, f"Deployment {route.deployment.name} is terminated: restore it to serve traffic.")


def _queue_full(route: Route, waiting: int) -> Reply:
    return message(
        429,
        f"Deployment {route.deployment.name}: Service {route.target.service} has {waiting} requests waiting,"
        " its queue's limit: retry later.",
        ("retry-after", "1"),
    )


def _closed(key: ServiceKey) -> Reply:
    """503 for a request that waited for a replica while its Service stopped being served."""
    deployment, service = key
    return message(
        503,
        f"Deployment {deployment} stopped being served while this request waited for a"
        f" ready replica of Service {service}.",
    )
