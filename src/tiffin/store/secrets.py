"""Organization secrets: env vars or mounted files whose values are kept encrypted at rest."""

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tiffin.core.errors import BadRequest, Conflict, NotFound
from tiffin.store.models import Cluster, Secret, User
from tiffin.store.secret_box import SecretBox

MOUNT_TYPES = ("env", "mountfile")
STAGES = ("build", "runtime", "all")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class SecretItem:
    key: str
    value: str
    sub_path: str | None = None


@dataclass(frozen=True)
class SecretContent:
    mount_type: str
    items: list[SecretItem]
    path: str | None
    stage: str

    def check(self) -> None:
        if self.mount_type not in MOUNT_TYPES:
            raise BadRequest(f"`content.type` must be env or mountfile, not {self.mount_type!r}.")
        if self.stage not in STAGES:
            raise BadRequest(f"`content.stage` must be build, runtime or all, not {self.stage!r}.")
        if not self.items:
            raise BadRequest("A secret needs at least one key=value item.")
        keys = [item.key for item in self.items]
        if len(set(keys)) != len(keys):
            raise BadRequest("Each key of a secret must appear only once.")
        for key in keys:
            self._check_key(key)

    def _check_key(self, key: str) -> None:
        if self.mount_type == "env" and not _ENV_NAME.fullmatch(key):
            raise BadRequest(f"{key!r} is not a valid environment variable name.")
        if self.mount_type == "mountfile" and (not key or "/" in key or key in (".", "..")):
            raise BadRequest(f"{key!r} is not a valid file name for a mounted secret.")


class SecretStore:
    """Secret rows plus the box that seals their values."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box

    def create(
        self,
        session: Session,
        creator: User,
        cluster: Cluster,
        name: str,
        description: str,
        content: SecretContent,
        now: datetime,
    ) -> Secret:
        _check_name(name)
        content.check()
        if self._find(session, creator, name) is not None:
            raise Conflict(f"A secret named {name!r} exists already: update it or pick another name.")
        secret = Secret(
            organization_id=creator.organization_id,
            cluster=cluster,
            cluster_id=cluster.id,
            creator=creator,
            creator_id=creator.id,
            name=name,
            description=description,
            created_at=now,
        )
        self._fill(secret, content)
        session.add(secret)
        session.flush()
        return secret

    def update(self, secret: Secret, description: str | None, content: SecretContent, now: datetime) -> None:
        content.check()
        if description is not None:
            secret.description = description
        self._fill(secret, content)
        secret.updated_at = now

    def get(self, session: Session, user: User, name: str) -> Secret:
        secret = self._find(session, user, name)
        if secret is None:
            raise NotFound(f"There is no secret {name!r}: run `bentoml secret list`.")
        return secret

    def items(self, secret: Secret) -> list[SecretItem]:
        return [SecretItem(**item) for item in self._box.open(secret.items_ciphertext)]

    @staticmethod
    def named_in_any_organization(session: Session, names: list[str]) -> list[Secret]:
        """The secrets with these names, of every organization (the caller matches organizations)."""
        return list(session.scalars(select(Secret).where(Secret.name.in_(names))))

    def list(self, session: Session, user: User, search: str | None) -> tuple[list[Secret], int]:
        query = select(Secret).where(Secret.organization_id == user.organization_id)
        if search:
            query = query.where(Secret.name.contains(search))
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        return list(session.scalars(query.order_by(Secret.id.desc()))), total

    def _fill(self, secret: Secret, content: SecretContent) -> None:
        secret.mount_type = content.mount_type
        secret.path = content.path
        secret.stage = content.stage
        secret.items_ciphertext = self._box.seal([vars(item) for item in content.items])

    @staticmethod
    def _find(session: Session, user: User, name: str) -> Secret | None:
        return session.scalar(
            select(Secret).where(Secret.organization_id == user.organization_id, Secret.name == name)
        )


def _check_name(name: str) -> None:
    if len(name) > 63 or not _SECRET_NAME.fullmatch(name):
        raise BadRequest(
            f"The secret name {name!r} is not valid: use lowercase letters, digits and '-',"
            " starting and ending with a letter or digit, at most 63 characters."
        )
