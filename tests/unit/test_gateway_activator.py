"""The activator on a fake loop clock: forward, wait, refuse, and who gets the room that frees up."""

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tiffin.gateway.activator import Activator, Slot
from tiffin.gateway.balancer import Balancers
from tiffin.gateway.replies import Reply
from tiffin.gateway.table import Route, RouteTable, compile_table
from tiffin.gateway.upstream import Endpoints
from tiffin.routing.snapshot import Admission, DeploymentRoute, RoutingSnapshot, ServiceRoute

PORT = 1000
SHARED = 8080  # the gateway's shared port, which routes by host name
R1, R2 = "http://127.0.0.1:5", "http://127.0.0.1:6"


@dataclass(order=True)
class _Timer:
    when: float
    number: int
    callback: Callable[..., object] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoopClock:
    """A loop clock that moves only when the test says so, firing the timers that fall due."""

    def __init__(self) -> None:
        self.now = 100.0
        self._timers: list[_Timer] = []
        self._made = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> _Timer:
        self._made += 1
        timer = _Timer(when, self._made, callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._timers and self._timers[0].when <= self.now:
            timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.callback(*timer.args)


class Request:
    """A waiter that remembers what it was told."""

    def __init__(self) -> None:
        self.slot: Slot | None = None
        self.refused: Reply | None = None

    def on_slot(self, slot: Slot) -> None:
        self.slot = slot

    def on_refused(self, reply: Reply) -> None:
        self.refused = reply


class World:
    def __init__(self, **admission: Any) -> None:
        self.clock = FakeLoopClock()
        self.demanded: list[tuple[str, str]] = []
        self.activator = Activator(self.clock, self.demanded.append)
        self.registry, self.balancers = Endpoints(), Balancers("least_in_flight")
        self.admission = Admission(**admission)
        self.version = 0
        self.domain = ""

    def publish(self, *urls: str, status: str = "running", served: bool = True) -> RouteTable:
        service = ServiceRoute("Svc", PORT + 1, urls, self.admission)
        deployments = (
            {"d": DeploymentRoute("d", PORT, "Svc", {"Svc": service}, status=status)} if served else {}
        )
        self.version += 1
        snapshot = RoutingSnapshot(deployments, self.version, self.domain)
        table = compile_table(snapshot, self.registry, self.balancers, SHARED)
        self.registry.replace(dict(table.endpoints))
        self.activator.update(table.services)
        self.table = table
        return table

    @property
    def route(self) -> Route:
        return self.table.routes[PORT]

    def arrive(self) -> tuple[Request, Slot | Reply | None]:
        request = Request()
        return request, self.activator.acquire(self.route, request)


def test_a_ready_replica_takes_the_request_and_counts_it_in_flight() -> None:
    world = World(hold_s=5)
    world.publish(R1)

    _, outcome = world.arrive()

    assert isinstance(outcome, Slot) and outcome.endpoint.url == R1 and outcome.endpoint.in_flight == 1
    outcome.release()
    outcome.release()  # twice is harmless
    assert outcome.endpoint.in_flight == 0
    assert world.activator.arrivals == {("d", "Svc"): 1}


def test_without_a_ready_replica_a_request_waits_and_announces_demand_once() -> None:
    world = World(hold_s=5)
    world.publish()

    request, outcome = world.arrive()

    assert outcome is None and world.activator.waiting == 1
    assert world.demanded == [("d", "Svc")]
    world.clock.advance(2)
    assert world.activator.stats()[("d", "Svc")].oldest_wait_s == 2
    world.publish(R1)
    assert request.slot is not None and request.slot.endpoint.url == R1
    assert world.activator.waiting == 0 and world.demanded == [("d", "Svc")]


def test_a_wait_ends_with_a_503_at_its_deadline_naming_the_deployment_message() -> None:
    world = World(hold_s=5)
    world.publish()
    request, _ = world.arrive()

    world.clock.advance(4.9)
    assert request.refused is None
    world.clock.advance(0.2)

    assert request.refused is not None and request.refused.status == 503
    assert dict(request.refused.headers)["retry-after"] == "1"
    assert world.activator.waiting == 0


def test_without_hold_time_no_replica_means_503_at_once() -> None:
    world = World(hold_s=0)
    world.publish()

    _, outcome = world.arrive()

    assert isinstance(outcome, Reply) and outcome.status == 503 and world.activator.waiting == 0


def test_behind_the_queue_each_replica_takes_max_concurrency_and_the_rest_wait_in_order() -> None:
    world = World(hold_s=30, queue=True, max_concurrency=2, queue_capacity=3)
    world.publish(R1)
    admitted = [world.arrive()[1] for _ in range(2)]
    waiting = [world.arrive()[0] for _ in range(3)]

    _, refused = world.arrive()

    assert all(isinstance(slot, Slot) for slot in admitted)
    assert isinstance(refused, Reply) and refused.status == 429 and "3 requests waiting" in str(refused.body)
    first = admitted[0]
    assert isinstance(first, Slot)
    first.release()
    assert [w.slot is not None for w in waiting] == [True, False, False], "the oldest takes the room"


def test_freed_room_goes_to_the_line_not_to_a_newcomer() -> None:
    world = World(hold_s=30, queue=True, max_concurrency=1)
    world.publish(R1)
    first = world.arrive()[1]
    queued, _ = world.arrive()
    assert isinstance(first, Slot)
    first.release()
    assert queued.slot is not None

    _, outcome = world.arrive()

    assert outcome is None, "the replica is busy with the queued request"


def test_a_new_replica_serves_the_line_oldest_first() -> None:
    world = World(hold_s=30, queue=True, max_concurrency=1)
    world.publish(R1)
    world.arrive()
    line = [world.arrive()[0] for _ in range(3)]

    world.publish(R1, R2)

    assert [w.slot is not None for w in line] == [True, False, False]
    assert line[0].slot is not None and line[0].slot.endpoint.url == R2


def test_waiters_whose_deployment_is_removed_or_terminated_are_refused() -> None:
    world = World(hold_s=30)
    world.publish()
    gone, _ = world.arrive()
    world.publish(served=False)
    assert gone.refused is not None and "stopped being served" in str(gone.refused.body)

    world.publish()
    stopped, _ = world.arrive()
    world.publish(status="terminated")
    assert stopped.refused is not None and "terminated" in str(stopped.refused.body)


def test_a_waiter_whose_client_left_is_forgotten() -> None:
    world = World(hold_s=30)
    world.publish()
    request, _ = world.arrive()

    world.activator.cancel(("d", "Svc"), request)
    world.publish(R1)
    world.clock.advance(60)

    assert request.slot is None and request.refused is None and world.activator.waiting == 0


def test_elsewhere_moves_the_request_to_another_replica_after_a_refused_connection() -> None:
    world = World(hold_s=5)
    world.publish(R1, R2)
    _, slot = world.arrive()
    assert isinstance(slot, Slot)

    other = slot.elsewhere([slot.endpoint])

    assert other is not None and other.endpoint is not slot.endpoint
    assert slot.endpoint.in_flight == 0 and other.endpoint.in_flight == 1
    assert other.elsewhere([slot.endpoint, other.endpoint]) is None


def test_closing_refuses_everyone_in_line() -> None:
    world = World(hold_s=30)
    world.publish()
    line = [world.arrive()[0] for _ in range(2)]

    world.activator.close()

    assert all(w.refused is not None and w.refused.status == 503 for w in line)


@pytest.mark.parametrize("capacity", [0, 1])
def test_a_queue_capacity_of_zero_means_no_bound(capacity: int) -> None:
    world = World(hold_s=30, queue=True, max_concurrency=1, queue_capacity=capacity)
    world.publish(R1)
    world.arrive()
    outcomes = [world.arrive()[1] for _ in range(3)]

    refused = [o for o in outcomes if isinstance(o, Reply)]
    assert len(refused) == (2 if capacity == 1 else 0)


def test_an_admission_change_applies_to_waiters_at_the_next_table() -> None:
    world = World(hold_s=30, queue=True, max_concurrency=1)
    world.publish(R1)
    world.arrive()
    waiting, _ = world.arrive()

    world.admission = replace(world.admission, max_concurrency=2)
    world.publish(R1)

    assert waiting.slot is not None


def test_requests_by_host_name_and_by_port_wait_in_one_line_for_their_service() -> None:
    world = World(hold_s=30, queue=True, max_concurrency=1)
    world.domain = "apps.example.test"
    world.publish()
    by_host = world.table.route(SHARED, b"D.apps.example.test:8080")
    assert by_host is not None
    first, second = Request(), Request()

    assert world.activator.acquire(by_host, first) is None
    assert world.activator.acquire(world.route, second) is None
    assert world.activator.waiting == 1 + 1 and world.demanded == [("d", "Svc"), ("d", "Svc")]
    world.publish(R1)

    assert first.slot is not None and second.slot is None, "one line, in arrival order"
    first.slot.release()
    assert second.slot is not None


def test_a_request_by_host_name_is_refused_when_its_deployment_goes() -> None:
    world = World(hold_s=30)
    world.domain = "apps.example.test"
    world.publish()
    request = Request()
    by_host = world.table.route(SHARED, b"d.apps.example.test")
    assert by_host is not None and world.activator.acquire(by_host, request) is None

    world.publish(served=False)

    assert request.refused is not None and "stopped being served" in str(request.refused.body)
