"""Who am I and which organization: `auth/current`, `current_org`, and the browser-login stubs."""

from typing import Any

from fastapi import APIRouter

from tiffin.api import wire
from tiffin.api.auth import AnyToken, Context
from tiffin.core.errors import NotImplementedYet
from tiffin.store.models import User

router = APIRouter(prefix="/api/v1")


@router.get("/auth/current")
def current_user(principal: AnyToken, context: Context) -> dict[str, Any]:
    with context.db.session() as session:
        return wire.user(_load_user(session, principal.user_id))


@router.get("/current_org")
def current_org(principal: AnyToken, context: Context) -> dict[str, Any]:
    with context.db.session() as session:
        return wire.organization(_load_user(session, principal.user_id).organization)


@router.get("/auth/code")
@router.get("/auth/token")
def browser_login() -> None:
    raise NotImplementedYet(
        "Browser login is not available yet: run `bentoml cloud login --endpoint <url>"
        " --api-token <token>` with the token `tiffin up` printed."
    )


def _load_user(session: Any, user_id: int) -> User:
    user: User = session.get_one(User, user_id)
    return user
