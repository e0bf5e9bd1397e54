"""Draining: a serving replica leaves the routes first and is stopped a moment later.

While it drains it is reported as STOPPING to the planner (so it counts neither as live nor as
ready) and to the gateway (so it gets no new requests); its in-flight requests finish during bentoml's
own graceful shutdown after the SIGTERM.
"""

from collections.abc import Sequence
from dataclasses import replace

from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus

DRAIN_S = 1.0


class Drains:
    def __init__(self, drain_s: float = DRAIN_S) -> None:
        self._drain_s = drain_s
        self._stop_at: dict[str, float] = {}

    def begin(self, replica_id: str, now: float) -> None:
        self._stop_at.setdefault(replica_id, now + self._drain_s)

    def as_seen(self, observed: Sequence[ReplicaStatus]) -> list[ReplicaStatus]:
        """`observed`, with draining replicas shown as STOPPING; forgets replicas that are gone."""
        present = {r.replica_id for r in observed}
        self._stop_at = {k: v for k, v in self._stop_at.items() if k in present}
        return [
            replace(r, phase=ReplicaPhase.STOPPING)
            if r.replica_id in self._stop_at and r.phase is not ReplicaPhase.FAILED
            else r
            for r in observed
        ]

    def due(self, now: float) -> list[str]:
        """Replicas whose drain is over: stop them now (each is returned once)."""
        ready = [k for k, at in self._stop_at.items() if at <= now]
        for replica_id in ready:
            self._stop_at[replica_id] = float("inf")
        return ready
