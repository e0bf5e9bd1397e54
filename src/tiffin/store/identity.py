"""The organization, admin user and cluster a Tiffin starts with, created once on first start."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tiffin.core import scopes
from tiffin.core.errors import NotFound
from tiffin.store.models import Cluster, Organization, User
from tiffin.store.tokens import NewToken, create_token

ORGANIZATION_NAME = "default"
ADMIN_NAME = "admin"
ADMIN_EMAIL = "admin@tiffin.local"
CLUSTER_NAME = "default"
ADMIN_TOKEN_SCOPES = [*(s.value for s in scopes.Scope), scopes.PROTECTED_ENDPOINT]


@dataclass(frozen=True)
class Bootstrap:
    """What the first start created; `admin_token` is None on every later start."""

    admin_token: str | None


def bootstrap(session: Session, now: datetime, admin_token: str | None) -> Bootstrap:
    """Create the organization, admin, cluster and admin token unless they exist already."""
    if session.scalar(select(Organization).limit(1)) is not None:
        return Bootstrap(admin_token=None)
    org = Organization(name=ORGANIZATION_NAME, description="", created_at=now)
    admin = User(organization=org, name=ADMIN_NAME, email=ADMIN_EMAIL, created_at=now)
    session.add_all([org, admin])
    session.flush()
    session.add(_default_cluster(org, admin, now))
    spec = NewToken("admin", "Created on first start of Tiffin.", ADMIN_TOKEN_SCOPES, None)
    _, secret = create_token(session, admin, spec, now, secret=admin_token)
    return Bootstrap(admin_token=secret)


def _default_cluster(org: Organization, admin: User, now: datetime) -> Cluster:
    return Cluster(
        organization_id=org.id,
        creator_id=admin.id,
        name=CLUSTER_NAME,
        description="This Tiffin's own runtime: replicas run as processes on this machine.",
        created_at=now,
    )


def default_cluster(session: Session) -> Cluster:
    cluster = session.scalar(select(Cluster).where(Cluster.name == CLUSTER_NAME))
    assert cluster is not None, "the store was not bootstrapped"
    return cluster


def list_clusters(session: Session) -> list[Cluster]:
    return list(session.scalars(select(Cluster).order_by(Cluster.id)))


def find_cluster(session: Session, name: str | None) -> Cluster:
    """The cluster called `name` (empty or None: the default), or a 404 naming the choices."""
    if not name:
        return default_cluster(session)
    cluster = session.scalar(select(Cluster).where(Cluster.name == name))
    if cluster is None:
        choices = ", ".join(c.name for c in list_clusters(session))
        raise NotFound(f"There is no cluster {name!r}: use one of {choices}, or leave it empty.")
    return cluster
