"""Which ready replica of a Service gets the next request.

Round robin spreads equal requests evenly; least-in-flight sends work to the replica with the fewest
requests still running, which matters when requests differ wildly in cost (LLM generations next to
health probes). Ties rotate, so with sequential traffic both behave like round robin.
"""

from collections.abc import Collection
from typing import Literal, Protocol

from tiffin.gateway.upstream import Endpoint

Policy = Literal["round_robin", "least_in_flight"]


class Balancer(Protocol):
    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """The next endpoint not in `exclude`, or None when none is left."""
        ...


class RoundRobin:
    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self._endpoints = endpoints
        self._next = 0

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        count = len(self._endpoints)
        for offset in range(count):
            index = (self._next + offset) % count
            endpoint = self._endpoints[index]
            if endpoint not in exclude:
                self._next = index + 1
                return endpoint
        return None


class LeastInFlight:
    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self._endpoints = endpoints
        self._next = 0

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        endpoints = self._endpoints
        count = len(endpoints)
        best: Endpoint | None = None
        best_index = 0
        for offset in range(count):
            index = (self._next + offset) % count
            endpoint = endpoints[index]
            if endpoint not in exclude and (best is None or endpoint.in_flight < best.in_flight):
                best, best_index = endpoint, index
        self._next = best_index + 1
        return best


def make_balancer(policy: Policy, endpoints: tuple[Endpoint, ...]) -> Balancer:
    return RoundRobin(endpoints) if policy == "round_robin" else LeastInFlight(endpoints)
