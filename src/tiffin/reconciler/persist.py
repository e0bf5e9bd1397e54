"""Writing what a reconcile step found back to the store: statuses, scale, replica records, events.

The API reads these; only the reconciler writes them. A step that changed nothing writes nothing, so an
idle Tiffin does not touch its database twice a second. Replica records carry each Service's restart
count and last reason, which is how a new Tiffin process remembers them (`remembered_restarts`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tiffin.backends.protocol import ReplicaStatus
from tiffin.core.clock import Clock
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.reconciler.events import Happened, status_change
from tiffin.reconciler.plan import RestartBook
from tiffin.reconciler.status import Status
from tiffin.store import events
from tiffin.store.db import Database, Session
from tiffin.store.deployments import replace_replica_records, restart_histories
from tiffin.store.models import Deployment, ReplicaRecord

Scales = dict[str, dict[str, dict[str, int]]]  # deployment -> Service -> replicas, ready, waiting, ...


@dataclass(frozen=True)
class Observed:
    """What a step found per deployment: its status, and the scale of each of its Services."""

    statuses: dict[str, Status]
    scales: dict[str, dict[str, dict[str, int]]]

    def differs(self, row: Deployment) -> bool:
        status = self.statuses.get(row.name)
        if status is None:
            return False
        return (row.status, row.status_message, row.scale) != (
            status.status,
            status.message,
            self._scale(row),
        )

    def write(self, row: Deployment, now: datetime) -> list[Happened]:
        """Store it on `row`; a new status is also an event."""
        status, was = self.statuses[row.name], Status(DeploymentStatus(row.status), row.status_message)
        if (was.status, was.message) != (status.status, status.message):
            row.status, row.status_message, row.status_updated_at = status.status, status.message, now
        row.scale = self._scale(row)
        return [status_change(row.name, was, status)] if was.status != status.status else []

    def _scale(self, row: Deployment) -> dict[str, dict[str, int]]:
        return self.scales.get(row.name, {})


@dataclass(frozen=True)
class Replicas:
    """The replicas a step saw, and the restart history that gives their counts and reasons."""

    observed: Sequence[ReplicaStatus]
    book: RestartBook

    def values(self) -> dict[str, tuple[object, ...]]:
        return {r.replica_id: self.record_values(r) for r in self.observed}

    def record_values(self, replica: ReplicaStatus) -> tuple[object, ...]:
        health = self.book.health((replica.deployment, replica.service))
        inherited = health.last_reason if replica.revision == health.failing_revision else ""
        reason = replica.reason or inherited
        return (replica.phase.value, reason, health.restarts, replica.url, replica.pid)


class Recorder:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db, self._clock = db, clock
        self._records: dict[str, tuple[object, ...]] = {}

    def persist(
        self,
        rows: Sequence[Deployment],
        seen: Observed,
        replicas: Replicas,
        happened: list[Happened],
    ) -> None:
        now = self._clock.now()
        records = replicas.values()
        changed = [row for row in rows if seen.differs(row)]
        if not changed and records == self._records and not happened:
            return
        with self._db.session() as session:
            for row in changed:
                fresh = session.get(Deployment, row.id)
                if fresh is not None:
                    happened += seen.write(fresh, now)
            if records != self._records:
                _write_records(session, rows, replicas, now)
            _write_events(session, {row.name: row.id for row in rows}, happened, now)
        self._records = records


def _write_records(session: Session, rows: Sequence[Deployment], replicas: Replicas, now: datetime) -> None:
    """Replace every replica record by what this step saw (of deployments that still exist)."""
    ids = {row.name: row.id for row in rows}
    records = [
        _record(replica, ids[replica.deployment], replicas, now)
        for replica in replicas.observed
        if replica.deployment in ids
    ]
    replace_replica_records(session, records)


def _record(replica: ReplicaStatus, deployment_id: int, replicas: Replicas, now: datetime) -> ReplicaRecord:
    state, reason, restarts, url, pid = replicas.record_values(replica)
    return ReplicaRecord(
        replica_id=replica.replica_id,
        deployment_id=deployment_id,
        service=replica.service,
        revision=replica.revision,
        state=state,
        reason=reason,
        restarts=restarts,
        url=url,
        pid=pid,
        updated_at=now,
    )


def _write_events(session: Session, ids: dict[str, int], happened: Sequence[Happened], now: datetime) -> None:
    touched = set()
    for item in happened:
        if item.deployment in ids:
            events.record(session, (ids[item.deployment], item.deployment), item.event, now)
            touched.add(ids[item.deployment])
    for deployment_id in touched:
        events.prune(session, deployment_id)


def remembered_restarts(db: Database) -> RestartBook:
    """Restart counts and reasons as the last Tiffin left them in the replica records."""
    with db.session() as session:
        return RestartBook.remembered(
            [
                ((h.deployment, h.service), h.restarts, h.last_reason, h.revision)
                for h in restart_histories(session)
            ]
        )
