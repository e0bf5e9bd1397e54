"""Organization secrets (docs/bentocloud-api.md §3.8): values are accepted, encrypted, and never sent back."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tiffin.api import wire
from tiffin.api.auth import Context, ReadOrganization, WriteOrganization
from tiffin.api.bodies import CreateSecret, SecretContentBody, UpdateSecret
from tiffin.api.query import text_param
from tiffin.store.identity import find_cluster
from tiffin.store.models import Secret, User
from tiffin.store.secrets import SecretContent, SecretItem, SecretStore

router = APIRouter(prefix="/api/v1/org_secrets")
Json = dict[str, Any]


ClusterQuery = Annotated[str | None, Query(alias="cluster")]


@router.get("")
def list_secrets(
    principal: ReadOrganization, context: Context, request: Request, cluster: ClusterQuery = None
) -> Json:
    """Every secret: the CLI asks for `count=10` and never pages, so `count` is not applied."""
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        find_cluster(session, cluster)
        rows, total = context.secrets.list(session, user, text_param(request.query_params.get("search")))
        return wire.page([_json(context.secrets, row) for row in rows], 0, total)


@router.post("")
def create(
    body: CreateSecret, principal: WriteOrganization, context: Context, cluster: ClusterQuery = None
) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = context.secrets.create(
            session,
            user,
            find_cluster(session, cluster),
            body.name,
            body.description or "",
            _content(body.content),
            context.clock.now(),
        )
        return _json(context.secrets, row)


@router.get("/{name}")
def get(name: str, principal: ReadOrganization, context: Context, cluster: ClusterQuery = None) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        find_cluster(session, cluster)
        return _json(context.secrets, context.secrets.get(session, user, name))


@router.patch("/{name}")
def update(
    name: str,
    body: UpdateSecret,
    principal: WriteOrganization,
    context: Context,
    cluster: ClusterQuery = None,
) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        find_cluster(session, cluster)
        row = context.secrets.get(session, user, name)
        context.secrets.update(row, body.description, _content(body.content), context.clock.now())
        return _json(context.secrets, row)


@router.delete("/{name}")
def delete(name: str, principal: WriteOrganization, context: Context, cluster: ClusterQuery = None) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        find_cluster(session, cluster)
        row = context.secrets.get(session, user, name)
        body = _json(context.secrets, row)
        session.delete(row)
        return body


def _content(body: SecretContentBody) -> SecretContent:
    items = [SecretItem(item.key, item.value, item.sub_path) for item in body.items]
    return SecretContent(body.type, items, body.path, body.stage or "runtime")


def _json(store: SecretStore, row: Secret) -> Json:
    return wire.secret(row, store.items(row))
