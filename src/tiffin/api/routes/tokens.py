"""API tokens (docs/bentocloud-api.md §3.9): create (secret shown once), list, get, delete."""

from typing import Any

from fastapi import APIRouter, Request

from tiffin.api import wire
from tiffin.api.auth import Context, ReadOrganization, WriteOrganization
from tiffin.api.bodies import CreateToken
from tiffin.api.query import int_param, text_param
from tiffin.core.errors import BadRequest
from tiffin.core.scopes import normalize_scopes
from tiffin.core.timefmt import parse_client_time
from tiffin.store import tokens
from tiffin.store.models import ApiToken, User

router = APIRouter(prefix="/api/v1/api_tokens")
Json = dict[str, Any]


@router.post("")
def create(body: CreateToken, principal: WriteOrganization, context: Context) -> Json:
    now = context.clock.now()
    expired_at = parse_client_time(body.expired_at, "expired_at", local=True)
    if expired_at is not None and expired_at <= now:
        raise BadRequest("`expired_at` is in the past: give a date in the future, or none.")
    spec = tokens.NewToken(body.name, body.description or "", normalize_scopes(body.scopes), expired_at)
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row, secret = tokens.create_token(session, user, spec, now)
        return wire.api_token(row, expired=False, secret=secret)


@router.get("")
def list_tokens(principal: ReadOrganization, context: Context, request: Request) -> Json:
    params = request.query_params
    start = int_param(params.get("start"), "start", 0)
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        rows, total = tokens.list_tokens(
            session,
            user,
            start,
            int_param(params.get("count"), "count", 100),
            text_param(params.get("search")),
        )
        return wire.page([_json(context, row) for row in rows], start, total)


@router.get("/{uid}")
def get(uid: str, principal: ReadOrganization, context: Context) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        return _json(context, tokens.get_token(session, user, uid))


@router.delete("/{uid}")
def delete(uid: str, principal: WriteOrganization, context: Context) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = tokens.get_token(session, user, uid)
        body = _json(context, row)
        tokens.delete_token(session, user, uid)
        return body


def _json(context: Any, row: ApiToken) -> Json:
    return wire.api_token(row, expired=tokens.is_expired(row, context.clock.now()))
