"""Receiving an archive: stream it to staging, check it, and only then store it and mark it.

Used by the proxy upload, the presigned PUT and multipart completion alike, so every path applies the
same checks: size limit, safe members, a manifest whose name and version match the pushed tag.
"""

from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from tiffin.api.context import ApiContext
from tiffin.artifacts.archive import read_manifest
from tiffin.core.errors import BadRequest
from tiffin.core.settings import UploadMode
from tiffin.store.models import Artifact, Organization
from tiffin.store.registry import (
    Kind,
    UploadStatus,
    find_artifact,
    find_repository,
    finish_upload,
)

MANIFEST_FILE = {Kind.BENTO: "bento.yaml", Kind.MODEL: "model.yaml"}
STRATEGY = {
    UploadMode.PROXY: "proxy",
    UploadMode.PRESIGNED: None,
    UploadMode.MULTIPART: "presigned_url",
}


def transmission_strategy(context: ApiContext) -> str | None:
    return STRATEGY[context.settings.upload_mode]


def load_artifact(session: Any, org_id: int, kind: Kind, repo: str, version: str) -> Artifact:
    org = session.get_one(Organization, org_id)
    return find_artifact(session, find_repository(session, org, kind, repo), version)


async def receive_archive(
    context: ApiContext, request: Request, target: tuple[int, Kind, str, str], mark_success: bool
) -> Artifact:
    """Stream the request body into staging, then check and store it under `target`."""
    await run_in_threadpool(_load, context, target)
    _check_declared_size(context, request)
    staged = context.artifacts.new_staging_path()
    await context.artifacts.receive(request.stream(), staged, context.settings.max_upload_bytes)
    return await run_in_threadpool(accept_archive, context, target, staged, mark_success)


def accept_archive(
    context: ApiContext, target: tuple[int, Kind, str, str], staged: Path, mark_success: bool
) -> Artifact:
    """Check the staged archive; store it only if every check passes (else it is deleted)."""
    org_id, kind, repo, version = target
    try:
        _check_manifest(read_manifest(staged, MANIFEST_FILE[kind]), kind, repo, version)
        with context.db.session() as session:
            artifact = load_artifact(session, org_id, kind, repo, version)
            final = context.artifacts.path_for(kind, repo, version)
            artifact.size_bytes = context.artifacts.commit(staged, final)
            if mark_success:
                finish_upload(artifact, UploadStatus.SUCCESS, "", context.clock.now())
            return artifact
    finally:
        staged.unlink(missing_ok=True)


def _load(context: ApiContext, target: tuple[int, Kind, str, str]) -> None:
    with context.db.session() as session:
        load_artifact(session, *target)


def _check_declared_size(context: ApiContext, request: Request) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > context.settings.max_upload_bytes:
        raise context.artifacts.too_large()


def _check_manifest(manifest: dict[str, Any], kind: Kind, repo: str, version: str) -> None:
    found = (manifest.get("name"), manifest.get("version"))
    if found != (repo, version):
        raise BadRequest(
            f"The archive's {MANIFEST_FILE[kind]} describes {found[0]}:{found[1]}, but it was pushed"
            f" as {repo}:{version}: push the {kind} under its own tag."
        )
