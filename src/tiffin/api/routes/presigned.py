"""Presigned URLs: unauthenticated PUT/GET of one artifact, allowed by the signed ticket in the path."""

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from tiffin.api.auth import Context
from tiffin.api.context import ApiContext
from tiffin.api.routes.registry import archive_response
from tiffin.api.tickets import Ticket
from tiffin.api.uploads import load_artifact, receive_archive
from tiffin.store.registry import Kind

router = APIRouter(prefix="/api/v1")


@router.put("/presigned/{ticket}", name="presigned")
async def presigned_put(ticket: str, context: Context, request: Request) -> Response:
    granted = context.tickets.verify(ticket, "upload", "upload-part")
    if granted.action == "upload-part":
        return await _receive_part(context, request, granted)
    target = (granted.organization_id, Kind(granted.kind), granted.repository, granted.version)
    await receive_archive(context, request, target, mark_success=False)
    return Response(status_code=200)


@router.get("/presigned/{ticket}", name="presigned")
def presigned_get(ticket: str, context: Context) -> FileResponse:
    granted = context.tickets.verify(ticket, "download")
    return archive_response(context, granted.kind, granted.repository, granted.version)


async def _receive_part(context: ApiContext, request: Request, ticket: Ticket) -> Response:
    await run_in_threadpool(_check_target, context, ticket)
    store = context.artifacts
    target = store.part_path(ticket.upload_id, ticket.part_number)
    target.unlink(missing_ok=True)  # a retried part replaces its earlier copy, so that copy must not count
    budget = store.max_upload_bytes - await run_in_threadpool(store.parts_size, ticket.upload_id)
    digest = await store.receive(request.stream(), target, budget)
    return Response(status_code=200, headers={"ETag": f'"{digest}"'})


def _check_target(context: ApiContext, ticket: Ticket) -> Any:
    with context.db.session() as session:
        return load_artifact(
            session, ticket.organization_id, Kind(ticket.kind), ticket.repository, ticket.version
        )
