"""Replica tokens, one per deployment revision: what the revision's replicas get as BENTO_CLOUD_API_KEY.

A rolling rollout keeps replicas of the old revision serving while the new ones start, so minting a
token for the new revision must not cut the old replicas off from the API and from the protected
deployments they call: each revision has its own token, named `replica:<deployment>:<revision uid>`.
Its secret is sealed on the revision, so replicas started for it later (after a crash, or by a
restarted Tiffin) get the same one. The token is revoked once the revision is no longer its
deployment's current one and none of its replicas is left (`retire_replica_tokens`, called by the
reconciler each step), or when the deployment is deleted. Terminating a deployment keeps its current
revision's token, which a restore reuses.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tiffin.core.scopes import replica_scopes
from tiffin.store import events
from tiffin.store.events import Kind, NewEvent
from tiffin.store.models import ApiToken, Deployment, DeploymentRevision
from tiffin.store.secret_box import SecretBox
from tiffin.store.tokens import NewToken, create_token

RevisionKey = tuple[str, str]  # (deployment name, revision uid), as replicas carry them


def replica_token_name(deployment: str, revision: str) -> str:
    return f"replica:{deployment}:{revision}"


def mint_replica_token(
    session: Session, deployment: str, revision: DeploymentRevision, box: SecretBox, now: datetime
) -> None:
    """A token for the revision's replicas (read deployments, call this deployment and those its bento
    depends on), owned by the revision's creator and kept sealed on the revision."""
    scopes = replica_scopes(deployment, revision.artifact.manifest or {})
    description = f"Used by the replicas of revision {revision.uid}."
    spec = NewToken(replica_token_name(deployment, revision.uid), description, scopes, None)
    _, secret = create_token(session, revision.creator, spec, now)
    revision.replica_token_ciphertext = box.seal(secret)


@dataclass(frozen=True)
class _Holder:
    """A revision that is not its deployment's current one but still holds a replica token."""

    deployment_id: int
    deployment: str
    revision_id: int
    revision: str

    @property
    def key(self) -> RevisionKey:
        return (self.deployment, self.revision)


def retire_replica_tokens(
    session: Session, in_use: Collection[RevisionKey], now: datetime
) -> list[RevisionKey]:
    """Revoke the token of every revision that is no longer current and that no replica in `in_use`
    belongs to; returns the revisions whose tokens went."""
    retired = [holder for holder in _holders(session) if holder.key not in in_use]
    for holder in retired:
        _revoke(session, holder, now)
    return [holder.key for holder in retired]


def delete_replica_tokens(session: Session, deployment: str, revisions: Iterable[str]) -> None:
    """Revoke the tokens of these revisions (uids) of `deployment` at once (the deployment goes)."""
    names = [replica_token_name(deployment, uid) for uid in revisions]
    session.execute(delete(ApiToken).where(ApiToken.name.in_(names)))


def _holders(session: Session) -> list[_Holder]:
    query = (
        select(Deployment.id, Deployment.name, DeploymentRevision.id, DeploymentRevision.uid)
        .select_from(DeploymentRevision)
        .join(Deployment, Deployment.id == DeploymentRevision.deployment_id)
        .where(
            DeploymentRevision.replica_token_ciphertext != "",
            Deployment.current_revision_id.is_distinct_from(DeploymentRevision.id),
        )
    )
    return [_Holder(*row) for row in session.execute(query)]


def _revoke(session: Session, holder: _Holder, now: datetime) -> None:
    delete_replica_tokens(session, holder.deployment, [holder.revision])
    session.execute(
        update(DeploymentRevision)
        .where(DeploymentRevision.id == holder.revision_id)
        .values(replica_token_ciphertext="")
    )
    message = (
        f"Revision {holder.revision} no longer runs any replica: its replica token"
        f" ({replica_token_name(*holder.key)}) is revoked."
    )
    events.record(session, (holder.deployment_id, holder.deployment), NewEvent(Kind.REVISION, message), now)
