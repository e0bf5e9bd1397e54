"""Who is calling: the X-YATAI-API-TOKEN header checked against stored tokens, and scope checks."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header

from tiffin.api.context import ApiContext, get_context
from tiffin.core.errors import Forbidden
from tiffin.core.scopes import Permission, grants
from tiffin.store.tokens import authenticate


@dataclass(frozen=True)
class Principal:
    user_id: int
    organization_id: int
    token_name: str
    scopes: tuple[str, ...]


Context = Annotated[ApiContext, Depends(get_context)]


def require(permission: Permission | None) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and, if given, checks `permission`."""

    def dependency(
        context: Context,
        x_yatai_api_token: Annotated[str | None, Header()] = None,
    ) -> Principal:
        with context.db.session() as session:
            token = authenticate(session, x_yatai_api_token, context.clock.now())
            principal = Principal(token.user_id, token.user.organization_id, token.name, tuple(token.scopes))
        if permission is not None and not grants(principal.scopes, permission):
            raise Forbidden(
                f"The API token {principal.token_name!r} may not {permission.value}: create a token"
                " with a scope that allows it (e.g. `api`)."
            )
        return principal

    return dependency


AnyToken = Annotated[Principal, Depends(require(None))]
ReadRegistry = Annotated[Principal, Depends(require(Permission.READ_REGISTRY))]
WriteRegistry = Annotated[Principal, Depends(require(Permission.WRITE_REGISTRY))]
ReadOrganization = Annotated[Principal, Depends(require(Permission.READ_ORGANIZATION))]
WriteOrganization = Annotated[Principal, Depends(require(Permission.WRITE_ORGANIZATION))]
ReadCluster = Annotated[Principal, Depends(require(Permission.READ_CLUSTER))]
WriteCluster = Annotated[Principal, Depends(require(Permission.WRITE_CLUSTER))]
