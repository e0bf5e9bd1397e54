"""The bento and model registry: repositories, versions and their upload state.

Bentos and models behave the same way on the wire (docs/bentocloud-api.md §3.2–3.3); `kind` tells them
apart, so one set of functions serves both.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tiffin.core.errors import BadRequest, Conflict, NotFound
from tiffin.core.tags import check_tag_part
from tiffin.store.models import Artifact, Labels, Organization, Repository


class Kind(StrEnum):
    BENTO = "bento"
    MODEL = "model"


class UploadStatus(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    SUCCESS = "success"
    FAILED = "failed"


@dataclass(frozen=True)
class NewArtifact:
    version: str
    description: str
    manifest: dict[str, Any] | None
    labels: Labels
    build_at: datetime | None


def find_repository(session: Session, org: Organization, kind: Kind, name: str) -> Repository:
    repo = session.scalar(_repositories(org, kind).where(Repository.name == name))
    if repo is None:
        raise NotFound(f"There is no {kind} repository {name!r}: push a {kind} named {name!r} first.")
    return repo


def create_repository(
    session: Session, org: Organization, kind: Kind, name: str, description: str, now: datetime
) -> Repository:
    check_tag_part(name, f"{kind} name")
    existing = session.scalar(_repositories(org, kind).where(Repository.name == name))
    if existing is not None:
        return existing
    repo = Repository(organization_id=org.id, kind=kind, name=name, description=description, created_at=now)
    session.add(repo)
    session.flush()
    return repo


def list_repositories(session: Session, org: Organization, kind: Kind) -> list[Repository]:
    return list(session.scalars(_repositories(org, kind).order_by(Repository.id.desc())))


def latest_artifact(session: Session, repo: Repository) -> Artifact | None:
    query = select(Artifact).where(Artifact.repository_id == repo.id)
    return session.scalar(query.order_by(Artifact.id.desc()).limit(1))


def find_artifact(session: Session, repo: Repository, version: str) -> Artifact:
    artifact = session.scalar(
        select(Artifact).where(Artifact.repository_id == repo.id, Artifact.version == version)
    )
    if artifact is None:
        raise NotFound(f"There is no {repo.kind} {repo.name}:{version}: push it first.")
    return artifact


def create_artifact(session: Session, repo: Repository, spec: NewArtifact, now: datetime) -> Artifact:
    check_tag_part(spec.version, f"{repo.kind} version")
    if _exists(session, repo, spec.version):
        raise Conflict(f"The {repo.kind} {repo.name}:{spec.version} exists already; update it instead.")
    artifact = Artifact(
        repository=repo,
        repository_id=repo.id,
        version=spec.version,
        description=spec.description,
        manifest=spec.manifest,
        labels=spec.labels,
        build_at=spec.build_at,
        created_at=now,
    )
    session.add(artifact)
    session.flush()
    return artifact


def list_artifacts(
    session: Session, org: Organization, kind: Kind, page: "Page", repo: Repository | None = None
) -> tuple[list[Artifact], int]:
    """Versions newest first (the client takes `items[0]` as the latest)."""
    query = (
        select(Artifact).join(Repository).where(Repository.organization_id == org.id, Repository.kind == kind)
    )
    if repo is not None:
        query = query.where(Artifact.repository_id == repo.id)
    for word in page.words:
        query = query.where(Artifact.version.contains(word))
    query = query.order_by(Artifact.id.desc())
    if page.labels:
        matching = [row for row in session.scalars(query) if _has_labels(row, page.labels)]
        return matching[page.start : page.start + page.count], len(matching)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    return list(session.scalars(query.offset(page.start).limit(page.count))), total


@dataclass(frozen=True)
class Page:
    """A page of a listing; `words` must appear in the version, `labels` must all be set."""

    start: int = 0
    count: int = 20
    words: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


def _has_labels(artifact: Artifact, wanted: tuple[tuple[str, str], ...]) -> bool:
    present = {(label.get("key"), label.get("value")) for label in artifact.labels}
    return all(pair in present for pair in wanted)


def start_upload(artifact: Artifact, now: datetime) -> None:
    artifact.upload_status = UploadStatus.UPLOADING
    artifact.upload_started_at = now
    artifact.updated_at = now


def finish_upload(artifact: Artifact, status: str, reason: str, now: datetime) -> None:
    if status not in (UploadStatus.SUCCESS, UploadStatus.FAILED):
        raise BadRequest(f"`status` must be 'success' or 'failed', not {status!r}.")
    artifact.upload_status = status
    artifact.upload_finished_reason = reason
    artifact.upload_finished_at = now
    artifact.updated_at = now


def _repositories(org: Organization, kind: Kind) -> Select[Repository]:
    return select(Repository).where(Repository.organization_id == org.id, Repository.kind == kind)


def _exists(session: Session, repo: Repository, version: str) -> bool:
    query = select(Artifact.id).where(Artifact.repository_id == repo.id, Artifact.version == version)
    return session.scalar(query) is not None
