"""Readiness deadlines: a replica still starting after its Service's cold-start timeout has failed.

bentoml keeps a replica whose Service cannot start (an exception in `__init__`, a model that will not
load) alive and unready forever; without a deadline such a revision would never count as failing.
An overdue replica is reported FAILED to the planner and stopped.
"""

from collections.abc import Mapping, Sequence
from dataclasses import replace

from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus

DEFAULT_READY_TIMEOUT_S = 120.0

ServiceKey = tuple[str, str, str]  # (deployment, service, revision)


class ReadinessDeadlines:
    def __init__(self) -> None:
        self._since: dict[str, float] = {}
        self._overdue: set[str] = set()

    def as_seen(
        self, observed: Sequence[ReplicaStatus], timeouts: Mapping[ServiceKey, float], now: float
    ) -> list[ReplicaStatus]:
        """`observed`, with replicas starting for longer than their timeout shown as FAILED."""
        starting = {r.replica_id for r in observed if r.phase is ReplicaPhase.STARTING}
        self._since = {k: v for k, v in self._since.items() if k in starting}
        self._overdue &= starting
        return [self._judge(r, timeouts, now) for r in observed]

    def overdue_ids(self) -> frozenset[str]:
        """Replicas judged failed for missing their deadline, whose processes still run."""
        return frozenset(self._overdue)

    def _judge(
        self, replica: ReplicaStatus, timeouts: Mapping[ServiceKey, float], now: float
    ) -> ReplicaStatus:
        if replica.phase is not ReplicaPhase.STARTING:
            return replica
        since = self._since.setdefault(replica.replica_id, now)
        limit = timeouts.get((replica.deployment, replica.service, replica.revision), DEFAULT_READY_TIMEOUT_S)
        if now - since < limit:
            return replica
        self._overdue.add(replica.replica_id)
        reason = f"not ready after {limit:.0f} s (cold start timeout)"
        if replica.last_error:
            reason += f": {replica.last_error}"
        return replace(replica, phase=ReplicaPhase.FAILED, reason=reason)
