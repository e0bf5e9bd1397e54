"""A backend whose replicas are records a test moves by hand: `set_ready`, `crash`, `finish_stopping`."""

from collections.abc import Callable
from dataclasses import replace

from tiffin.backends.ended import EndedReplica
from tiffin.backends.protocol import ReplicaPhase, ReplicaSpec, ReplicaStatus, Usage


class FakeBackend:
    def __init__(self) -> None:
        self.replicas: dict[str, ReplicaStatus] = {}
        self.specs: dict[str, ReplicaSpec] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.used: dict[str, Usage] = {}  # what `usage()` reports, set by the test
        self.subscribers: list[Callable[[], None]] = []

    def start(self, spec: ReplicaSpec) -> None:
        self.specs[spec.replica_id] = spec
        self.started.append(spec.replica_id)
        self.replicas[spec.replica_id] = ReplicaStatus(
            spec.replica_id,
            spec.deployment,
            spec.service,
            spec.revision,
            ReplicaPhase.STARTING,
            url=f"http://127.0.0.1:{40000 + len(self.started)}",
            pid=1000 + len(self.started),
        )

    def stop(self, replica_id: str) -> None:
        self.stopped.append(replica_id)
        self._move(replica_id, ReplicaPhase.STOPPING)

    def forget(self, replica_id: str) -> None:
        self.replicas.pop(replica_id, None)

    def observe(self) -> list[ReplicaStatus]:
        return list(self.replicas.values())

    def usage(self) -> dict[str, Usage]:
        running = self.of(ReplicaPhase.RUNNING)
        return {replica_id: used for replica_id, used in self.used.items() if replica_id in running}

    def read_log(self, replica_id: str, tail: int) -> str:
        return f"log of {replica_id}\n" if replica_id in self.replicas else ""

    def ended(self, deployment: str) -> list[EndedReplica]:
        return []

    def subscribe(self, callback: Callable[[], None]) -> None:
        self.subscribers.append(callback)

    def close(self, stop_replicas: bool) -> None:
        if stop_replicas:
            self.replicas.clear()

    def set_ready(self, replica_id: str) -> None:
        self._move(replica_id, ReplicaPhase.RUNNING)

    def crash(self, replica_id: str, reason: str = "exited with code 1") -> None:
        self._move(replica_id, ReplicaPhase.FAILED, reason)

    def report_error(self, replica_id: str, error: str) -> None:
        """A starting replica's output shows an exception (its Service's `__init__` raised)."""
        self.replicas[replica_id] = replace(self.replicas[replica_id], last_error=error)

    def finish_stopping(self) -> None:
        for replica_id in [r for r, s in self.replicas.items() if s.phase is ReplicaPhase.STOPPING]:
            del self.replicas[replica_id]

    def of(self, phase: ReplicaPhase) -> list[str]:
        return [r for r, s in self.replicas.items() if s.phase is phase]

    def _move(self, replica_id: str, phase: ReplicaPhase, reason: str = "") -> None:
        self.replicas[replica_id] = replace(self.replicas[replica_id], phase=phase, reason=reason)
