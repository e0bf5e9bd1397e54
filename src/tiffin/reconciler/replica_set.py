"""The replicas a reconcile step observed, asked by Service, revision and phase in one place.

Planning, status and scaling all ask the same questions ("the live replicas of this Service's current
revision", "how many of them are ready", "the old revision's replicas"); as Ray Serve's
`ReplicaStateContainer` does, one small immutable type answers them, instead of a list comprehension
at every place that asks.
"""

from collections.abc import Iterable, Iterator, Sequence

from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus

LIVE = (ReplicaPhase.PENDING, ReplicaPhase.STARTING, ReplicaPhase.RUNNING)


class ReplicaSet:
    __slots__ = ("_by_service", "_replicas")

    def __init__(self, replicas: Iterable[ReplicaStatus] = ()) -> None:
        self._replicas: tuple[ReplicaStatus, ...] = tuple(replicas)
        self._by_service: dict[tuple[str, str], list[ReplicaStatus]] | None = None  # built when asked

    def __iter__(self) -> Iterator[ReplicaStatus]:
        return iter(self._replicas)

    def __len__(self) -> int:
        return len(self._replicas)

    def __bool__(self) -> bool:
        return bool(self._replicas)

    def of(self, deployment: str, service: str | None = None) -> "ReplicaSet":
        """The replicas of one deployment, or of one of its Services (looked up, not scanned: a step
        asks this for every Service of hundreds of deployments)."""
        if service is None:
            return ReplicaSet(r for r in self._replicas if r.deployment == deployment)
        return ReplicaSet(self._index().get((deployment, service), ()))

    def _index(self) -> dict[tuple[str, str], list[ReplicaStatus]]:
        if self._by_service is None:
            self._by_service = {}
            for replica in self._replicas:
                self._by_service.setdefault((replica.deployment, replica.service), []).append(replica)
        return self._by_service

    def of_revision(self, revision: str) -> "ReplicaSet":
        return ReplicaSet(r for r in self._replicas if r.revision == revision)

    def other_than(self, revision: str) -> "ReplicaSet":
        """The replicas of every other revision (old ones, during a rollout)."""
        return ReplicaSet(r for r in self._replicas if r.revision != revision)

    def get(self, *phases: ReplicaPhase) -> list[ReplicaStatus]:
        """The replicas in any of `phases` (all of them when none is given), in the order observed."""
        return [r for r in self._replicas if not phases or r.phase in phases]

    def count(self, *phases: ReplicaPhase) -> int:
        return sum(1 for r in self._replicas if not phases or r.phase in phases)

    def ids(self) -> set[str]:
        return {r.replica_id for r in self._replicas}


def replica_set(observed: Sequence[ReplicaStatus] | ReplicaSet) -> ReplicaSet:
    return observed if isinstance(observed, ReplicaSet) else ReplicaSet(observed)
