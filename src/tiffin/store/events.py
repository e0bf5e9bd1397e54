"""A deployment's event timeline: what happened to it, when, to which Service, and why.

The API records what users asked for (revisions, rollbacks, terminate, restore); the reconciler records
what it did and saw (rollout steps, replicas starting, ready, failing, stopping, status changes). Each
deployment keeps its newest `KEEP_PER_DEPLOYMENT` events; deleting a deployment deletes them. Every
event is also one line of Tiffin's own log (logger `tiffin.events`), with the deployment and Service.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tiffin.store.models import DeploymentEvent

KEEP_PER_DEPLOYMENT = 1000
log = logging.getLogger("tiffin.events")


class Kind(StrEnum):
    REVISION = "revision"
    ROLLOUT = "rollout"
    ROLLBACK = "rollback"
    REPLICA = "replica"
    STATUS = "status"
    SCALING = "scaling"
    LIFECYCLE = "lifecycle"


@dataclass(frozen=True)
class NewEvent:
    kind: Kind
    message: str
    service: str = ""
    warning: bool = False  # something went wrong (a replica failed, a rollback, an unhealthy status)


def record(session: Session, deployment: tuple[int, str], event: NewEvent, now: datetime) -> None:
    """Add `event` to the timeline of `deployment` (its id and name), and log it as one line."""
    deployment_id, name = deployment
    level = logging.WARNING if event.warning or event.kind is Kind.ROLLBACK else logging.INFO
    extra = {"deployment": name, "service": event.service, "event": event.kind.value}
    log.log(level, "%s", event.message, extra=extra)
    session.add(
        DeploymentEvent(
            deployment_id=deployment_id,
            created_at=now,
            kind=event.kind,
            service=event.service,
            message=event.message,
        )
    )


def prune(session: Session, deployment_id: int) -> None:
    """Drop all but the newest `KEEP_PER_DEPLOYMENT` events of one deployment."""
    oldest_kept = session.scalar(
        select(DeploymentEvent.id)
        .where(DeploymentEvent.deployment_id == deployment_id)
        .order_by(DeploymentEvent.id.desc())
        .offset(KEEP_PER_DEPLOYMENT - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        session.execute(
            delete(DeploymentEvent).where(
                DeploymentEvent.deployment_id == deployment_id, DeploymentEvent.id < oldest_kept
            )
        )


def latest(session: Session, deployment_id: int, limit: int, service: str | None) -> list[DeploymentEvent]:
    """The newest `limit` events (of one Service, if given), oldest first."""
    query = select(DeploymentEvent).where(DeploymentEvent.deployment_id == deployment_id)
    if service:
        query = query.where(DeploymentEvent.service == service)
    newest = session.scalars(query.order_by(DeploymentEvent.id.desc()).limit(limit))
    return list(reversed(list(newest)))
