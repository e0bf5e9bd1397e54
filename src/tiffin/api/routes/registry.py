"""Bento and model repositories, versions, uploads and downloads (docs/bentocloud-api.md §3.2–3.3), for both
kinds."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from tiffin.api import wire
from tiffin.api.auth import Context, ReadRegistry, WriteRegistry
from tiffin.api.bodies import (
    CompleteMultipart,
    CreateArtifact,
    CreateRepository,
    FinishUpload,
    PresignPart,
    UpdateArtifact,
)
from tiffin.api.context import ApiContext
from tiffin.api.query import filter_terms, int_param
from tiffin.api.tickets import Ticket
from tiffin.api.uploads import (
    accept_archive,
    load_artifact,
    receive_archive,
    transmission_strategy,
)
from tiffin.core.errors import BadRequest, NotFound
from tiffin.core.ids import new_uid
from tiffin.core.settings import UploadMode
from tiffin.core.timefmt import parse_client_time
from tiffin.store import registry as reg
from tiffin.store.models import Artifact, Organization, Repository
from tiffin.store.registry import Kind

Json = dict[str, Any]


def artifact_json(context: ApiContext, artifact: Artifact, **urls: str) -> Json:
    return wire.artifact(artifact, transmission_strategy(context), **urls)


def build_router(kind: Kind) -> APIRouter:
    """All registry routes of one kind: `/api/v1/{kind}_repositories/...` and `/api/v1/{kind}s`."""
    router = APIRouter(prefix="/api/v1")
    _repository_routes(router, kind)
    _version_routes(router, kind)
    _upload_routes(router, kind)
    _multipart_routes(router, kind)
    _download_routes(router, kind)
    return router


def _repository_routes(router: APIRouter, kind: Kind) -> None:
    repos = f"/{kind}_repositories"

    @router.get(repos + "/{repo}")
    def get_repository(repo: str, principal: ReadRegistry, context: Context) -> Json:
        with context.db.session() as session:
            row = reg.find_repository(session, _org(session, principal.organization_id), kind, repo)
            return wire.repository(row, reg.latest_artifact(session, row), transmission_strategy(context))

    @router.post(repos)
    def create_repository(body: CreateRepository, principal: WriteRegistry, context: Context) -> Json:
        with context.db.session() as session:
            org = _org(session, principal.organization_id)
            row = reg.create_repository(
                session, org, kind, body.name, body.description or "", context.clock.now()
            )
            return wire.repository(row, reg.latest_artifact(session, row), transmission_strategy(context))

    @router.get(repos)
    def list_repositories(principal: ReadRegistry, context: Context) -> Json:
        with context.db.session() as session:
            rows = reg.list_repositories(session, _org(session, principal.organization_id), kind)
            strategy = transmission_strategy(context)
            items = [wire.repository(r, reg.latest_artifact(session, r), strategy) for r in rows]
        return wire.page(items, 0, len(items))


def _version_routes(router: APIRouter, kind: Kind) -> None:
    versions = f"/{kind}_repositories/{{repo}}/{kind}s"

    @router.get(versions + "/{version}")
    def get_version(repo: str, version: str, principal: ReadRegistry, context: Context) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            return artifact_json(context, artifact)

    @router.get(versions)
    def list_versions(repo: str, principal: ReadRegistry, context: Context, request: Request) -> Json:
        page = _page(request)
        with context.db.session() as session:
            org = _org(session, principal.organization_id)
            row = _repository_to_list(session, org, kind, repo)
            if row is None:
                return wire.page([], page.start, 0)
            rows, total = reg.list_artifacts(session, org, kind, page, row)
            return wire.page([artifact_json(context, a) for a in rows], page.start, total)

    @router.post(versions)
    def create_version(repo: str, body: CreateArtifact, principal: WriteRegistry, context: Context) -> Json:
        spec = reg.NewArtifact(
            version=body.version,
            description=body.description or "",
            manifest=_checked_manifest(kind, body.manifest),
            labels=[label.model_dump() for label in body.labels or []],
            build_at=parse_client_time(body.build_at, "build_at"),
        )
        with context.db.session() as session:
            org = _org(session, principal.organization_id)
            row = reg.find_repository(session, org, kind, repo)
            return artifact_json(context, reg.create_artifact(session, row, spec, context.clock.now()))

    @router.patch(versions + "/{version}")
    def update_version(
        repo: str, version: str, body: UpdateArtifact, principal: WriteRegistry, context: Context
    ) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            _apply_update(artifact, kind, body)
            artifact.updated_at = context.clock.now()
            return artifact_json(context, artifact)

    @router.get(f"/{kind}s")
    def list_all(principal: ReadRegistry, context: Context, request: Request) -> Json:
        page = _page(request)
        with context.db.session() as session:
            org = _org(session, principal.organization_id)
            rows, total = reg.list_artifacts(session, org, kind, page)
            strategy = transmission_strategy(context)
            items = [wire.artifact_with_repository(a, strategy) for a in rows]
        return wire.page(items, page.start, total)


def _upload_routes(router: APIRouter, kind: Kind) -> None:
    one = f"/{kind}_repositories/{{repo}}/{kind}s/{{version}}"

    @router.patch(one + "/presign_upload_url")
    def presign_upload(
        repo: str, version: str, principal: WriteRegistry, context: Context, request: Request
    ) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            if context.settings.upload_mode is UploadMode.PROXY:
                return artifact_json(context, artifact)
            url = _presigned_url(
                context, request, Ticket("upload", principal.organization_id, kind, repo, version)
            )
            return artifact_json(context, artifact, upload=url)

    @router.patch(one + "/start_upload")
    def start_upload(repo: str, version: str, principal: WriteRegistry, context: Context) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            reg.start_upload(artifact, context.clock.now())
            return artifact_json(context, artifact)

    @router.put(one + "/upload")
    async def upload(
        repo: str, version: str, principal: WriteRegistry, context: Context, request: Request
    ) -> Json:
        target = (principal.organization_id, kind, repo, version)
        artifact = await receive_archive(context, request, target, mark_success=True)
        return {"uid": artifact.uid, "upload_status": artifact.upload_status}

    @router.patch(one + "/finish_upload")
    def finish(
        repo: str, version: str, body: FinishUpload, principal: WriteRegistry, context: Context
    ) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            reg.finish_upload(artifact, body.status, body.reason or "", context.clock.now())
            return artifact_json(context, artifact)


def _multipart_routes(router: APIRouter, kind: Kind) -> None:
    one = f"/{kind}_repositories/{{repo}}/{kind}s/{{version}}"

    @router.patch(one + "/start_multipart_upload")
    def start_multipart(repo: str, version: str, principal: WriteRegistry, context: Context) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            artifact.upload_id = new_uid()
            return artifact_json(context, artifact)

    @router.patch(one + "/presign_multipart_upload_url")
    def presign_part(
        repo: str,
        version: str,
        body: PresignPart,
        principal: WriteRegistry,
        context: Context,
        request: Request,
    ) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            _check_upload_id(artifact, body.upload_id)
            ticket = Ticket(
                "upload-part",
                principal.organization_id,
                kind,
                repo,
                version,
                body.upload_id,
                body.part_number,
            )
            return artifact_json(context, artifact, upload=_presigned_url(context, request, ticket))

    @router.patch(one + "/complete_multipart_upload")
    def complete(
        repo: str, version: str, body: CompleteMultipart, principal: WriteRegistry, context: Context
    ) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            _check_upload_id(artifact, body.upload_id)
        try:
            _check_etags(context, body)
            staged = context.artifacts.assemble(body.upload_id, [part.part_number for part in body.parts])
            target = (principal.organization_id, kind, repo, version)
            return artifact_json(context, accept_archive(context, target, staged, mark_success=False))
        finally:
            context.artifacts.discard_parts(body.upload_id)


def _download_routes(router: APIRouter, kind: Kind) -> None:
    one = f"/{kind}_repositories/{{repo}}/{kind}s/{{version}}"

    @router.patch(one + "/presign_download_url")
    def presign_download(
        repo: str, version: str, principal: ReadRegistry, context: Context, request: Request
    ) -> Json:
        with context.db.session() as session:
            artifact = load_artifact(session, principal.organization_id, kind, repo, version)
            if context.settings.upload_mode is UploadMode.PROXY:
                return artifact_json(context, artifact)
            url = _presigned_url(
                context, request, Ticket("download", principal.organization_id, kind, repo, version)
            )
            return artifact_json(context, artifact, download=url)

    @router.get(one + "/download")
    def download(repo: str, version: str, principal: ReadRegistry, context: Context) -> FileResponse:
        with context.db.session() as session:
            load_artifact(session, principal.organization_id, kind, repo, version)
        return archive_response(context, kind, repo, version)


def archive_response(context: ApiContext, kind: str, repo: str, version: str) -> FileResponse:
    path = context.artifacts.path_for(kind, repo, version)
    if not path.exists():
        raise NotFound(f"The {kind} {repo}:{version} has no uploaded content: push it again.")
    return FileResponse(path, media_type="application/x-tar", filename=f"{repo}-{version}.tar")


def _presigned_url(context: ApiContext, request: Request, ticket: Ticket) -> str:
    return str(request.url_for("presigned", ticket=context.tickets.sign(ticket)))


def _check_upload_id(artifact: Artifact, upload_id: str) -> None:
    if not artifact.upload_id or artifact.upload_id != upload_id:
        raise BadRequest(
            f"{upload_id!r} is not the current multipart upload of this {artifact.repository.kind}:"
            " call start_multipart_upload first."
        )


def _check_etags(context: ApiContext, body: CompleteMultipart) -> None:
    for part in body.parts:
        stored = context.artifacts.part_etag(body.upload_id, part.part_number)
        if stored is None or part.etag.strip('"') != stored:
            raise BadRequest(f"Part {part.part_number} does not match what was uploaded: upload it again.")


def _checked_manifest(kind: Kind, manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    if kind is Kind.MODEL and manifest is None:
        raise BadRequest("A model needs a `manifest`: push it with the bentoml CLI.")
    return manifest


def _apply_update(artifact: Artifact, kind: Kind, body: UpdateArtifact) -> None:
    if body.description is not None:
        artifact.description = body.description
    if body.manifest is not None:
        artifact.manifest = _checked_manifest(kind, body.manifest)
    if body.labels is not None:
        artifact.labels = [label.model_dump() for label in body.labels]


def _page(request: Request) -> reg.Page:
    params = request.query_params
    words, labels = filter_terms(params.get("search"), params.get("q"))
    return reg.Page(
        start=int_param(params.get("start"), "start", 0),
        count=int_param(params.get("count"), "count", 20),
        words=words,
        labels=labels,
    )


def _repository_to_list(session: Any, org: Organization, kind: Kind, name: str) -> Repository | None:
    """The repository to list; an unknown one is a 404 for bentos but an empty list for models.

    The client's "latest model" lookup treats an empty list as "not found" and a 404 as a hard error,
    while its "latest bento" lookup crashes on an empty list (docs/bentocloud-api.md §3.2 B4, §3.3 M4).
    """
    try:
        return reg.find_repository(session, org, kind, name)
    except NotFound:
        if kind is Kind.MODEL:
            return None
        raise


def _org(session: Any, org_id: int) -> Organization:
    org: Organization = session.get_one(Organization, org_id)
    return org
