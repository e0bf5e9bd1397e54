"""The API token Ray nodes download bentos and models with: one token named `ray-nodes`.

Token secrets are stored only as hashes, so the controller keeps the secret it was given (sealed, in
`TIFFIN_HOME`) and asks here whether it is still good; a token deleted by a user (`bentoml api-token
delete`) or expired is replaced by a new one at the next controller start. Controllers with homes of
their own each keep a token of that name: one never revokes another's, whose actors may still be
downloading with it. It may read the registry
and the organization's settings (`read_organization`, the narrowest scope that reads bentos), nothing
else.
"""

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tiffin.core.scopes import Scope
from tiffin.store.models import ApiToken, User
from tiffin.store.tokens import NewToken, create_token, hash_token, is_expired

NODE_TOKEN_NAME = "ray-nodes"
NODE_TOKEN_SCOPES = [Scope.READ_ORGANIZATION.value]


def node_token(session: Session, known: str | None, now: datetime) -> str:
    """The secret of the `ray-nodes` token: `known` while it is still a valid token of that name, else
    a new token's (expired ones of that name are deleted), owned by the first user (the admin)."""
    if known:
        token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(known)))
        if token is not None and token.name == NODE_TOKEN_NAME and not is_expired(token, now):
            return known
    named = session.scalars(select(ApiToken).where(ApiToken.name == NODE_TOKEN_NAME)).all()
    expired = [token.id for token in named if is_expired(token, now)]
    if expired:
        session.execute(delete(ApiToken).where(ApiToken.id.in_(expired)))
    owner = session.scalar(select(User).order_by(User.id).limit(1))
    assert owner is not None, "the store was not bootstrapped"
    description = "Used by Ray nodes to download bentos and models (made by `tiffin controller`)."
    spec = NewToken(NODE_TOKEN_NAME, description, list(NODE_TOKEN_SCOPES), None)
    _, secret = create_token(session, owner, spec, now)
    return secret
