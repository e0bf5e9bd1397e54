"""Deployments and their immutable revisions: what users asked to run, and where it is reachable.

The API writes desired state here (create, update, terminate, delete); the reconciler reads it and
writes back only the observed `status` and the replica records.
"""

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tiffin.core.errors import BadRequest, Conflict, NotFound
from tiffin.store.models import (
    ApiToken,
    Artifact,
    Cluster,
    Deployment,
    DeploymentRevision,
    ReplicaRecord,
    User,
)
from tiffin.store.secret_box import SecretBox
from tiffin.store.tokens import NewToken, create_token

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
    session: Session, creator: User, cluster: Cluster, spec: NewDeployment, ports: "PortPool", now: datetime
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
    add_revision(session, row, creator, spec.artifact, spec.config, now)
    return row


def add_revision(
    session: Session,
    row: Deployment,
    creator: User,
    artifact: Artifact,
    config: dict[str, Any],
    now: datetime,
) -> DeploymentRevision:
    """A new immutable revision, made current; the deployment goes back to deploying."""
    revision = DeploymentRevision(
        deployment_id=row.id, artifact=artifact, creator=creator, config=config, created_at=now
    )
    session.add(revision)
    session.flush()
    row.current_revision_id = revision.id
    row.lifecycle = ACTIVE
    row.status, row.status_message, row.updated_at = "deploying", "", now
    return revision


def ensure_internal_ports(session: Session, row: Deployment, names: Iterable[str], ports: "PortPool") -> None:
    """Give Services that a new bento version added their own internal port."""
    missing = [name for name in names if name not in row.internal_ports]
    if missing:
        given = ports.allocate(session, len(missing))
        row.internal_ports = {**row.internal_ports, **dict(zip(missing, given, strict=True))}


def current_revision(session: Session, row: Deployment) -> DeploymentRevision | None:
    if row.current_revision_id is None:
        return None
    return session.get(DeploymentRevision, row.current_revision_id)


def terminate(row: Deployment, now: datetime) -> None:
    row.lifecycle = TERMINATED
    row.status, row.status_message, row.updated_at = "terminating", "", now


def delete_deployment(session: Session, row: Deployment) -> None:
    """Remove the deployment, its revisions, replica records and replica token for good."""
    session.execute(delete(ReplicaRecord).where(ReplicaRecord.deployment_id == row.id))
    session.execute(delete(DeploymentRevision).where(DeploymentRevision.deployment_id == row.id))
    session.execute(delete(ApiToken).where(ApiToken.name == replica_token_name(row.name)))
    session.delete(row)


def replica_token_name(deployment: str) -> str:
    return f"replica:{deployment}"


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


def replica_records(session: Session, row: Deployment) -> list[ReplicaRecord]:
    query = select(ReplicaRecord).where(ReplicaRecord.deployment_id == row.id)
    return list(session.scalars(query.order_by(ReplicaRecord.service, ReplicaRecord.replica_id)))


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


def mint_replica_token(
    session: Session, row: Deployment, creator: User, scopes: list[str], box: SecretBox, now: datetime
) -> None:
    """The token replicas get as BENTO_CLOUD_API_KEY, kept encrypted so restarts can hand it out again."""
    session.execute(delete(ApiToken).where(ApiToken.name == replica_token_name(row.name)))
    spec = NewToken(replica_token_name(row.name), "Used by this deployment's replicas.", scopes, None)
    _, secret = create_token(session, creator, spec, now)
    row.replica_token_ciphertext = box.seal(secret)


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


def restore(row: Deployment, now: datetime) -> None:
    """Bring a terminated deployment's current revision back."""
    if row.lifecycle != TERMINATED:
        raise Conflict(f"Deployment {row.name!r} is not terminated, so there is nothing to restore.")
    row.lifecycle = ACTIVE
    row.status, row.status_message, row.updated_at = "deploying", "", now


def roll_back(session: Session, name: str, reason: str, now: datetime) -> None:
    """Make the revision before the current one current again, as a new revision, saying why."""
    row = session.scalar(select(Deployment).where(Deployment.name == name))
    if row is None or row.current_revision_id is None:
        return
    previous = session.scalar(
        select(DeploymentRevision)
        .where(DeploymentRevision.deployment_id == row.id, DeploymentRevision.id < row.current_revision_id)
        .order_by(DeploymentRevision.id.desc())
        .limit(1)
    )
    if previous is None:
        return
    add_revision(session, row, row.creator, previous.artifact, dict(previous.config), now)
    row.status_message = f"Rolled back to revision {previous.uid}: {reason}."
