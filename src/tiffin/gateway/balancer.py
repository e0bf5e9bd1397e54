"""Which ready replica of a Service gets the next request.

Round robin spreads equal requests evenly; least-in-flight sends work to the replica with the fewest
requests still running, which matters when requests differ wildly in cost (LLM generations next to
health probes). Ties rotate, so with sequential traffic both behave like round robin. A balancer
belongs to its Service, not to a routing snapshot: a new snapshot hands it the new replica set and
its rotation goes on where it was, so light traffic still reaches every replica.
"""

from collections.abc import Collection
from typing import Literal

from tiffin.gateway.upstream import Endpoint

Policy = Literal["round_robin", "least_in_flight"]


class Balancer:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.endpoints: tuple[Endpoint, ...] = ()
        self._next = 0

    def update(self, endpoints: tuple[Endpoint, ...]) -> None:
        """Balance over `endpoints` from now on, carrying on the rotation."""
        self.endpoints = endpoints

    def pick(self, exclude: Collection[Endpoint] = (), cap: int = 0) -> Endpoint | None:
        """The next endpoint not in `exclude` with fewer than `cap` requests in flight (0: no cap)."""
        endpoints = self.endpoints
        count = len(endpoints)
        best: Endpoint | None = None
        best_index = 0
        for offset in range(count):
            index = (self._next + offset) % count
            endpoint = endpoints[index]
            if endpoint in exclude or (cap and endpoint.in_flight >= cap):
                continue
            if self.policy == "round_robin":
                best, best_index = endpoint, index
                break
            if best is None or endpoint.in_flight < best.in_flight:
                best, best_index = endpoint, index
        if best is not None:
            self._next = best_index + 1
        return best


class Balancers:
    """The balancer of every Service, kept across routing snapshots."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._by_service: dict[tuple[str, str], Balancer] = {}

    def of(self, key: tuple[str, str], endpoints: tuple[Endpoint, ...]) -> Balancer:
        balancer = self._by_service.get(key)
        if balancer is None:
            balancer = self._by_service[key] = Balancer(self._policy)
        balancer.update(endpoints)
        return balancer

    def keep_only(self, keys: Collection[tuple[str, str]]) -> None:
        """Forget the balancers of Services no snapshot routes to any more."""
        self._by_service = {k: b for k, b in self._by_service.items() if k in keys}
