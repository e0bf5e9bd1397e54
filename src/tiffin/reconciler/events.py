"""What changed between two reconcile steps, in words: the reconciler's half of a deployment's timeline.

Pure functions of the previous and the current view (observed replicas, rollouts in progress, the
Services still wanted, actions taken), so every message can be checked in unit tests without a clock.
Scaling events come from `scaling`, which knows why a count changed.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.core.strategy import DEFAULT_STRATEGY, Strategy
from tiffin.reconciler.plan import Action, DesiredService, Drain, SlotKey, Stop
from tiffin.reconciler.replica_set import ReplicaSet
from tiffin.reconciler.status import Status
from tiffin.store.events import Kind, NewEvent


@dataclass(frozen=True)
class Happened:
    deployment: str
    event: NewEvent


@dataclass(frozen=True)
class View:
    """What one step saw: replicas by id, the revision each rolling Service moves to, wanted counts."""

    replicas: Mapping[str, ReplicaStatus]
    rolling: Mapping[SlotKey, str]
    wanted: Mapping[SlotKey, int]


def view_of(
    desired: Sequence[DesiredService], observed: Sequence[ReplicaStatus], before: View | None
) -> View:
    """A Service rolls from when old replicas meet a startable new revision until only new ones serve."""
    replicas = ReplicaSet(observed)
    rolling = {
        d.key: d.revision
        for d in desired
        if d.template is not None
        and (_has_old(d, replicas) or (before is not None and _unfinished(d, replicas, before)))
    }
    return View({r.replica_id: r for r in observed}, rolling, {d.key: d.replicas for d in desired})


def _has_old(service: DesiredService, replicas: ReplicaSet) -> bool:
    old = replicas.of(*service.key).other_than(service.revision)
    return old.count() > old.count(ReplicaPhase.FAILED)


def _unfinished(service: DesiredService, replicas: ReplicaSet, before: View) -> bool:
    ready = replicas.of(*service.key).of_revision(service.revision).count(ReplicaPhase.RUNNING)
    return before.rolling.get(service.key) == service.revision and ready < service.replicas


def changes(before: View | None, after: View, strategies: Mapping[SlotKey, Strategy]) -> list[Happened]:
    """Everything that differs between two steps; the first step only reports adopted replicas."""
    if before is None:
        return [_adopted(r) for r in after.replicas.values() if r.phase is not ReplicaPhase.FAILED]
    return [
        *_replica_changes(before.replicas, after.replicas),
        *_rollout_changes(before.rolling, after, strategies),
    ]


def action_events(actions: Sequence[Action], replicas: Mapping[str, ReplicaStatus]) -> list[Happened]:
    """Removals with their reason; a rollback is recorded by the store together with its revision."""
    happened = []
    for action in actions:
        if not isinstance(action, Drain | Stop):
            continue
        replica = replicas.get(action.replica_id)
        if replica is None or replica.phase is ReplicaPhase.FAILED:
            continue  # a failure has its own event
        verb = "drains and stops" if isinstance(action, Drain) else "stops"
        happened.append(_replica_event(replica, f"Replica {replica.replica_id} {verb}: {action.reason}."))
    return happened


TROUBLED_STATUSES = (DeploymentStatus.UNHEALTHY, DeploymentStatus.IMAGE_BUILD_FAILED)


def status_change(deployment: str, old: Status, new: Status) -> Happened:
    detail = f": {new.message}" if new.message else "."
    message = f"Status {old.status} → {new.status}{detail}"
    return Happened(deployment, NewEvent(Kind.STATUS, message, warning=new.status in TROUBLED_STATUSES))


def _replica_changes(
    before: Mapping[str, ReplicaStatus], after: Mapping[str, ReplicaStatus]
) -> list[Happened]:
    happened = []
    for replica_id, replica in after.items():
        previous = before.get(replica_id)
        if previous is None:
            happened += _appeared(replica)
        elif previous.phase is not replica.phase:
            happened += _phase_changed(replica)
    for replica_id, gone in before.items():
        if replica_id not in after and gone.phase is not ReplicaPhase.FAILED:
            happened.append(_replica_event(gone, f"Replica {replica_id} stopped."))
    return happened


def _appeared(replica: ReplicaStatus) -> list[Happened]:
    """A new replica; one that was already ready when first seen is said to start, then be ready."""
    if replica.phase is ReplicaPhase.PENDING:
        return [_replica_event(replica, f"Replica {replica.replica_id} is pending: {replica.reason}.")]
    if replica.phase is ReplicaPhase.FAILED:
        return [_failed(replica)]
    started = _started(replica)
    return [started, *_phase_changed(replica)] if replica.phase is ReplicaPhase.RUNNING else [started]


def _phase_changed(replica: ReplicaStatus) -> list[Happened]:
    if replica.phase is ReplicaPhase.RUNNING:
        return [_replica_event(replica, f"Replica {replica.replica_id} is ready.")]
    if replica.phase is ReplicaPhase.FAILED:
        return [_failed(replica)]
    if replica.phase is ReplicaPhase.STARTING:
        return [_started(replica)]
    return []


def _started(replica: ReplicaStatus) -> Happened:
    return _replica_event(replica, f"Replica {replica.replica_id} started (revision {replica.revision}).")


def _failed(replica: ReplicaStatus) -> Happened:
    message = f"Replica {replica.replica_id} failed: {replica.reason or 'it exited'}."
    return Happened(replica.deployment, NewEvent(Kind.REPLICA, message, replica.service, warning=True))


def _adopted(replica: ReplicaStatus) -> Happened:
    message = f"Replica {replica.replica_id} adopted after a Tiffin start ({replica.phase.value})."
    return _replica_event(replica, message)


def _rollout_changes(
    before: Mapping[SlotKey, str], after: View, strategies: Mapping[SlotKey, Strategy]
) -> list[Happened]:
    happened = []
    for key, revision in after.rolling.items():
        if before.get(key) != revision:
            strategy = strategies.get(key, DEFAULT_STRATEGY)
            message = f"Rolling Service {key[1]} out to revision {revision} ({strategy})."
            happened.append(Happened(key[0], NewEvent(Kind.ROLLOUT, message, key[1])))
    for key, revision in before.items():
        if after.rolling.get(key) == revision:
            continue
        if key in after.rolling or key not in after.wanted:
            ended = f"Rollout of Service {key[1]} to revision {revision} ended before it finished."
        else:
            ended = f"Service {key[1]} runs revision {revision} only: rollout complete."
        happened.append(Happened(key[0], NewEvent(Kind.ROLLOUT, ended, key[1])))
    return happened


def _replica_event(replica: ReplicaStatus, message: str) -> Happened:
    return Happened(replica.deployment, NewEvent(Kind.REPLICA, message, replica.service))
