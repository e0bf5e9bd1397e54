"""API tokens: minted with a secret shown once, stored as a SHA-256 hash, checked in constant time."""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tiffin.core.errors import NotFound, Unauthorized
from tiffin.core.ids import new_token_secret
from tiffin.core.timefmt import as_utc
from tiffin.store.models import ApiToken, User

LAST_USED_RESOLUTION = timedelta(seconds=30)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    name: str
    description: str
    scopes: list[str]
    expired_at: datetime | None


def create_token(
    session: Session, user: User, spec: NewToken, now: datetime, secret: str | None = None
) -> tuple[ApiToken, str]:
    """Store a new token for `user`; returns the row and the secret (shown to the user once)."""
    secret = secret or new_token_secret()
    token = ApiToken(
        user=user,
        user_id=user.id,
        name=spec.name,
        description=spec.description,
        scopes=spec.scopes,
        expired_at=spec.expired_at,
        token_hash=hash_token(secret),
        created_at=now,
    )
    session.add(token)
    session.flush()
    return token, secret


def authenticate(session: Session, secret: str | None, now: datetime) -> ApiToken:
    """The token whose secret is `secret`, or a 401 saying why it cannot be used."""
    if not secret:
        raise Unauthorized(
            "This request has no API token: send one in the X-YATAI-API-TOKEN header"
            " (run `bentoml cloud login`)."
        )
    wanted = hash_token(secret)
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == wanted))
    if token is None or not hmac.compare_digest(token.token_hash, wanted):
        raise Unauthorized("This API token is not valid: check it or create a new one.")
    if is_expired(token, now):
        raise Unauthorized(f"The API token {token.name!r} has expired: create a new one.")
    _touch(token, now)
    return token


def is_expired(token: ApiToken, now: datetime) -> bool:
    return token.expired_at is not None and as_utc(token.expired_at) <= now


def _touch(token: ApiToken, now: datetime) -> None:
    last = token.last_used_at
    if last is None or now - as_utc(last) >= LAST_USED_RESOLUTION:
        token.last_used_at = now


def list_tokens(
    session: Session, user: User, start: int, count: int, search: str | None
) -> tuple[list[ApiToken], int]:
    query = select(ApiToken).where(ApiToken.user_id == user.id)
    if search:
        query = query.where(ApiToken.name.contains(search))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ApiToken.id.desc()).offset(start).limit(count))
    return list(rows), total


def get_token(session: Session, user: User, uid: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.uid == uid, ApiToken.user_id == user.id))
    if token is None:
        raise NotFound(f"No API token has the uid {uid!r}: run `bentoml cloud api-token list`.")
    return token


def delete_token(session: Session, user: User, uid: str) -> None:
    session.delete(get_token(session, user, uid))
