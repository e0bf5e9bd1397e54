"""The database schema as SQLAlchemy 2 ORM classes; Alembic migrations under `migrations/` create it."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tiffin.core.deployment_status import DeploymentStatus
from tiffin.core.ids import new_uid

Labels = list[dict[str, str]]


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, Labels: JSON}


class Timestamped:
    """Columns every stored resource shares: a public uid and creation/update times."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, default=new_uid)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]


class Organization(Timestamped, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class User(Timestamped, Base):
    __tablename__ = "users"

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str] = mapped_column(String(256))
    first_name: Mapped[str] = mapped_column(String(128), default="")
    last_name: Mapped[str] = mapped_column(String(128), default="")

    organization: Mapped[Organization] = relationship(lazy="joined")


class ApiToken(Timestamped, Base):
    __tablename__ = "api_tokens"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expired_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined")


class Cluster(Timestamped, Base):
    __tablename__ = "clusters"

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    organization: Mapped[Organization] = relationship(lazy="joined")
    creator: Mapped[User] = relationship(lazy="joined")


class Repository(Timestamped, Base):
    """A bento or model repository: the name part of `name:version` tags."""

    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("organization_id", "kind", "name"),)

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")


class Artifact(Timestamped, Base):
    """One version of a bento or model: its manifest, upload state and stored archive."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("repository_id", "version"),)

    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    manifest: Mapped[dict[str, Any] | None]
    labels: Mapped[Labels] = mapped_column(default=list)
    build_at: Mapped[datetime | None]
    upload_status: Mapped[str] = mapped_column(String(16), default="pending")
    upload_finished_reason: Mapped[str] = mapped_column(Text, default="")
    upload_id: Mapped[str | None] = mapped_column(String(32))
    upload_started_at: Mapped[datetime | None]
    upload_finished_at: Mapped[datetime | None]
    image_build_status: Mapped[str] = mapped_column(String(16), default="pending")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)

    repository: Mapped[Repository] = relationship(lazy="joined")


class Secret(Timestamped, Base):
    """An organization secret; `items_ciphertext` holds the encrypted key/value items."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    mount_type: Mapped[str] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16))
    items_ciphertext: Mapped[str] = mapped_column(Text)

    cluster: Mapped[Cluster] = relationship(lazy="joined")
    creator: Mapped[User] = relationship(lazy="joined")


class Deployment(Timestamped, Base):
    """What the user wants running; `status`, `status_message` and `scale` are written by the reconciler
    only."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    labels: Mapped[Labels] = mapped_column(default=list)
    dev: Mapped[bool] = mapped_column(default=False)
    lifecycle: Mapped[str] = mapped_column(String(16), default="active")  # active | terminated
    current_revision_id: Mapped[int | None] = mapped_column(Integer)
    port: Mapped[int] = mapped_column(Integer, unique=True)
    internal_ports: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(32), default=DeploymentStatus.DEPLOYING)  # a DeploymentStatus
    status_message: Mapped[str] = mapped_column(Text, default="")
    status_updated_at: Mapped[datetime | None]
    scale: Mapped[dict[str, Any]] = mapped_column(default=dict)  # per Service: replicas, ready, waiting

    cluster: Mapped[Cluster] = relationship(lazy="joined")
    creator: Mapped[User] = relationship(lazy="joined")


class DeploymentRevision(Timestamped, Base):
    """An immutable pair of bento and config, made by every create and update.

    `replica_token_ciphertext` seals the API token its replicas get (`BENTO_CLOUD_API_KEY`); it is
    emptied when that token is revoked, once the revision is no longer current and none of its
    replicas runs.
    """

    __tablename__ = "deployment_revisions"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    config: Mapped[dict[str, Any]]
    replica_token_ciphertext: Mapped[str] = mapped_column(Text, default="")

    artifact: Mapped[Artifact] = relationship(lazy="joined")
    creator: Mapped[User] = relationship(lazy="joined")


class ReplicaRecord(Base):
    """The last observed state of one replica, as the reconciler saw it (read by the API)."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(String(128))
    revision: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    url: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class DeploymentEvent(Base):
    """One line of a deployment's timeline: revisions, rollouts, replica changes, rollbacks, scaling."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(128), default="")
    message: Mapped[str] = mapped_column(Text)


class PublishedRoutes(Base):
    """The routing snapshot the leading controller published last (one row): gateways poll its version."""

    __tablename__ = "published_routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]]
    published_at: Mapped[datetime]


class GatewayState(Base):
    """One running gateway: its heartbeat, and what it counted (the controller sums every live one)."""

    __tablename__ = "gateways"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)
    traffic: Mapped[dict[str, Any]]
