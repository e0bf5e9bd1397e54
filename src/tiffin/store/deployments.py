"""Deployments and their immutable revisions: what users asked to run, and where it is reachable.

The API writes desired state here (create, update, terminate, delete); the reconciler reads it and
writes back only the observed `status` and the replica records.
"""

import logging
import socket
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tiffin.core.bento_manifest import manifest_services
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.core.errors import BadRequest, Conflict, NotFound
from tiffin.store import events
from tiffin.store.events import Kind, NewEvent
from tiffin.store.models import (
    Artifact,
    Cluster,
    Deployment,
    DeploymentEvent,
    DeploymentRevision,
    ReplicaRecord,
    User,
)
from tiffin.store.replica_tokens import delete_replica_tokens, mint_replica_token
from tiffin.store.secret_box import SecretBox

log = logging.getLogger("tiffin.events")
ACTIVE = "active"
TERMINATED = "terminated"
CONFIG_KEYS = ("access_authorization", "envs", "labels", "secrets", "services", "canary")


@dataclass(frozen=True)
class NewDeployment:
    name: str
    artifact: Artifact
    config: dict[str, Any]
    labels: list[dict[str, str]]
    dev: bool
    service_names: Sequence[str]


@dataclass(frozen=True)
class Change:
    """Who makes a deployment run which bento with which config, and in what words (for its events)."""

    user: User
    artifact: Artifact
    config: dict[str, Any]
    why: str
    kind: Kind = Kind.REVISION


@dataclass(frozen=True)
class DeploymentPage:
    start: int
    count: int
    search: str | None
    labels: tuple[tuple[str, str], ...]
    dev_only: bool = False


def find_deployment(session: Session, org_id: int, name: str) -> Deployment:
    row = session.scalar(
        select(Deployment).where(Deployment.organization_id == org_id, Deployment.name == name)
    )
    if row is None:
        raise NotFound(f"There is no deployment {name!r}: run `bentoml deployment list`.")
    return row


def create_deployment(
    session: Session,
    creator: User,
    cluster: Cluster,
    spec: NewDeployment,
    ports: "PortPool",
    box: SecretBox,
    now: datetime,
) -> Deployment:
    if session.scalar(_named(creator.organization_id, spec.name)) is not None:
        raise Conflict(f"A deployment named {spec.name!r} exists already: update it or pick another name.")
    port, *internal = ports.allocate(session, 1 + len(spec.service_names))
    row = Deployment(
        organization_id=creator.organization_id,
        cluster=cluster,
        creator=creator,
        name=spec.name,
        labels=spec.labels,
        dev=spec.dev,
        port=port,
        internal_ports=dict(zip(spec.service_names, internal, strict=True)),
        created_at=now,
    )
    session.add(row)
    session.flush()
    why = f"{creator.name} created the deployment"
    add_revision(session, row, Change(creator, spec.artifact, spec.config, why), box, now)
    return row


def add_revision(
    session: Session, row: Deployment, change: "Change", box: SecretBox, now: datetime
) -> DeploymentRevision:
    """A new immutable revision with its own replica token, made current; the deployment goes back to
    deploying."""
    revision = DeploymentRevision(
        deployment_id=row.id,
        artifact=change.artifact,
        creator=change.user,
        config=change.config,
        created_at=now,
    )
    session.add(revision)
    session.flush()
    mint_replica_token(session, row.name, revision, box, now)
    row.current_revision_id = revision.id
    row.lifecycle = ACTIVE
    row.status, row.status_message, row.updated_at = DeploymentStatus.DEPLOYING, "", now
    bento = f"{change.artifact.repository.name}:{change.artifact.version}"
    event = NewEvent(change.kind, f"Revision {revision.uid} ({bento}): {change.why}.")
    events.record(session, (row.id, row.name), event, now)
    return revision


def roll_out(
    session: Session,
    row: Deployment,
    change: "Change",
    ports: "PortPool",
    box: SecretBox,
    now: datetime,
) -> DeploymentRevision:
    """Make a new revision of the change's bento and config current: ports for its Services, then the
    revision itself (with its replica token)."""
    manifest = change.artifact.manifest or {}
    ensure_internal_ports(session, row, [str(s["name"]) for s in manifest_services(manifest)], ports)
    return add_revision(session, row, change, box, now)


def ensure_internal_ports(session: Session, row: Deployment, names: Iterable[str], ports: "PortPool") -> None:
    """Give Services that a new bento version added their own internal port."""
    missing = [name for name in names if name not in row.internal_ports]
    if missing:
        given = ports.allocate(session, len(missing))
        row.internal_ports = {**row.internal_ports, **dict(zip(missing, given, strict=True))}


def current_revision_uids(session: Session, rows: Sequence[Deployment]) -> dict[int, str]:
    """The uid of each deployment's current revision, by deployment id, in one light query."""
    ids = [row.current_revision_id for row in rows if row.current_revision_id is not None]
    if not ids:
        return {}
    query = select(DeploymentRevision.deployment_id, DeploymentRevision.uid).where(
        DeploymentRevision.id.in_(ids)
    )
    return {deployment_id: uid for deployment_id, uid in session.execute(query)}


def revisions_by_uid(session: Session, uids: Collection[str]) -> list[DeploymentRevision]:
    if not uids:
        return []
    return list(session.scalars(select(DeploymentRevision).where(DeploymentRevision.uid.in_(uids))))


def current_revision(session: Session, row: Deployment) -> DeploymentRevision | None:
    if row.current_revision_id is None:
        return None
    return session.get(DeploymentRevision, row.current_revision_id)


def terminate(session: Session, row: Deployment, user: User, now: datetime) -> None:
    row.lifecycle = TERMINATED
    row.status, row.status_message, row.updated_at = DeploymentStatus.TERMINATING, "", now
    message = f"{user.name} terminated the deployment: every replica drains and stops; revisions are kept."
    events.record(session, (row.id, row.name), NewEvent(Kind.LIFECYCLE, message), now)


def delete_deployment(session: Session, row: Deployment) -> None:
    """Remove the deployment, its revisions, replica records and every revision's replica token for
    good."""
    uids = session.scalars(select(DeploymentRevision.uid).where(DeploymentRevision.deployment_id == row.id))
    delete_replica_tokens(session, row.name, list(uids))
    session.execute(delete(ReplicaRecord).where(ReplicaRecord.deployment_id == row.id))
    session.execute(delete(DeploymentEvent).where(DeploymentEvent.deployment_id == row.id))
    session.execute(delete(DeploymentRevision).where(DeploymentRevision.deployment_id == row.id))
    session.delete(row)
    log.info("Deployment %s deleted.", row.name, extra={"deployment": row.name})


def list_deployments(session: Session, org_id: int, page: DeploymentPage) -> tuple[list[Deployment], int]:
    query = select(Deployment).where(Deployment.organization_id == org_id)
    if page.search:
        query = query.where(Deployment.name.contains(page.search))
    if page.dev_only:
        query = query.where(Deployment.dev.is_(True))
    rows = [row for row in session.scalars(query.order_by(Deployment.id.desc())) if _labelled(row, page)]
    return rows[page.start : page.start + page.count], len(rows)


def all_deployments(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.id)))


def replace_replica_records(session: Session, records: list[ReplicaRecord]) -> None:
    """The replica records become exactly `records` (what one reconcile step saw)."""
    session.execute(delete(ReplicaRecord))
    session.add_all(records)


def replica_records(session: Session, row: Deployment) -> list[ReplicaRecord]:
    query = select(ReplicaRecord).where(ReplicaRecord.deployment_id == row.id)
    return list(session.scalars(query.order_by(ReplicaRecord.service, ReplicaRecord.replica_id)))


@dataclass(frozen=True)
class RestartHistory:
    """What the replica records of one Service say about its crashes (kept across Tiffin restarts)."""

    deployment: str
    service: str
    restarts: int
    last_reason: str
    revision: str  # of the replica that carries the reason


def restart_histories(session: Session) -> list[RestartHistory]:
    """Per Service with recorded restarts: the count and the last reason given."""
    rows = session.execute(
        select(Deployment.name, ReplicaRecord).join(Deployment, Deployment.id == ReplicaRecord.deployment_id)
    )
    found: dict[tuple[str, str], RestartHistory] = {}
    for name, record in rows:
        key, known = (name, record.service), found.get((name, record.service))
        if record.restarts and (known is None or (record.reason and not known.last_reason)):
            found[key] = RestartHistory(name, record.service, record.restarts, record.reason, record.revision)
    return list(found.values())


def _labelled(row: Deployment, page: DeploymentPage) -> bool:
    present = {(label.get("key"), label.get("value")) for label in row.labels}
    return all(pair in present for pair in page.labels)


def _named(org_id: int, name: str) -> Any:
    return select(Deployment.id).where(Deployment.organization_id == org_id, Deployment.name == name)


class PortPool:
    """Loopback ports for deployment URLs and internal Service routes, stable across restarts."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def allocate(self, session: Session, count: int) -> list[int]:
        taken = self._taken(session)
        chosen: list[int] = []
        for port in range(self.first, self.last + 1):
            if port not in taken and _bindable(port):
                chosen.append(port)
                if len(chosen) == count:
                    return chosen
        raise BadRequest(
            f"No free deployment ports are left in {self.first}-{self.last}: delete a deployment or"
            " widen TIFFIN_DEPLOYMENT_PORTS."
        )

    @staticmethod
    def _taken(session: Session) -> set[int]:
        taken: set[int] = set()
        for port, internal in session.execute(select(Deployment.port, Deployment.internal_ports)):
            taken.add(port)
            taken.update(int(p) for p in internal.values())
        return taken


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def list_revisions(session: Session, row: Deployment) -> list[DeploymentRevision]:
    query = select(DeploymentRevision).where(DeploymentRevision.deployment_id == row.id)
    return list(session.scalars(query.order_by(DeploymentRevision.id.desc())))


def find_revision(session: Session, row: Deployment, uid: str) -> DeploymentRevision:
    revision = session.scalar(
        select(DeploymentRevision).where(
            DeploymentRevision.deployment_id == row.id, DeploymentRevision.uid == uid
        )
    )
    if revision is None:
        raise NotFound(
            f"Deployment {row.name!r} has no revision {uid!r}: run `tiffin revisions {row.name}` to see them."
        )
    return revision


def restore(session: Session, row: Deployment, user: User, now: datetime) -> None:
    """Bring a terminated deployment's current revision back."""
    if row.lifecycle != TERMINATED:
        raise Conflict(f"Deployment {row.name!r} is not terminated, so there is nothing to restore.")
    row.lifecycle = ACTIVE
    row.status, row.status_message, row.updated_at = DeploymentStatus.DEPLOYING, "", now
    revision = current_revision(session, row)
    message = f"{user.name} restored the deployment with revision {revision.uid if revision else '?'}."
    events.record(session, (row.id, row.name), NewEvent(Kind.LIFECYCLE, message), now)


@dataclass(frozen=True)
class RollbackTarget:
    deployment: str
    revision: str  # uid
    reason: str


def roll_back(session: Session, to: RollbackTarget, ports: "PortPool", box: SecretBox, now: datetime) -> None:
    """Make an earlier revision current again, as a new revision, saying why (automatic rollbacks)."""
    row = session.scalar(select(Deployment).where(Deployment.name == to.deployment))
    if row is None:
        return
    target = session.scalar(
        select(DeploymentRevision).where(
            DeploymentRevision.deployment_id == row.id, DeploymentRevision.uid == to.revision
        )
    )
    current = current_revision(session, row)
    if target is None or current is None or _same_content(current, target):
        return  # nothing to go back to, or this already is a rollback to it: no rollback loops
    why = f"rolled back automatically to revision {target.uid} because {to.reason}"
    change = Change(row.creator, target.artifact, dict(target.config), why, Kind.ROLLBACK)
    roll_out(session, row, change, ports, box, now)
    row.status_message = f"Rolled back to revision {target.uid}: {to.reason}."


def _same_content(one: DeploymentRevision, other: DeploymentRevision) -> bool:
    return one.artifact_id == other.artifact_id and one.config == other.config
