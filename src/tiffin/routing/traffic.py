"""What the gateway counts and the reconciler reads: per replica answers, errors and requests in flight,
per Service the requests that arrived (served, waiting or refused) and those waiting for a replica.

Replica counts are cumulative for as long as the gateway routes to the replica's URL; the reader takes
differences or rates as it needs them.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaTraffic:
    requests: int = 0  # exchanges that ended: answered, or failed before an answer
    errors: int = 0  # of those, 5xx answers and failures (refused, closed, cut off)
    in_flight: int = 0

    def __add__(self, other: "ReplicaTraffic") -> "ReplicaTraffic":
        return ReplicaTraffic(
            self.requests + other.requests, self.errors + other.errors, self.in_flight + other.in_flight
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class QueueStats:
    waiting: int = 0  # requests waiting for a replica (none ready, or all at their max_concurrency)
    oldest_wait_s: float = 0.0  # how long the longest-waiting one has waited


@dataclass(frozen=True)
class Traffic:
    replicas: Mapping[str, ReplicaTraffic]  # by replica URL, e.g. "http://127.0.0.1:41234"
    queues: Mapping[tuple[str, str], QueueStats]  # by (deployment, Service); only non-empty queues
    arrivals: Mapping[tuple[str, str], int] = field(default_factory=dict)  # requests so far, by Service


def merge(counts: Sequence[Traffic]) -> Traffic:
    """What several gateways counted, as one: requests and in-flight summed per replica, waiting
    requests summed per Service (the oldest wait is the longest), arrivals summed."""
    replicas: dict[str, ReplicaTraffic] = {}
    queues: dict[tuple[str, str], QueueStats] = {}
    arrivals: dict[tuple[str, str], int] = {}
    for traffic in counts:
        for url, counted in traffic.replicas.items():
            replicas[url] = replicas.get(url, ReplicaTraffic()) + counted
        for key, queue in traffic.queues.items():
            before = queues.get(key, QueueStats())
            queues[key] = QueueStats(
                before.waiting + queue.waiting, max(before.oldest_wait_s, queue.oldest_wait_s)
            )
        for key, count in traffic.arrivals.items():
            arrivals[key] = arrivals.get(key, 0) + count
    return Traffic(replicas, queues, arrivals)
