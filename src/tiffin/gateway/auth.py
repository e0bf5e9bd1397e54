"""Who may call a protected deployment: bearer tokens, checked against the store at most every few seconds.

The token check goes to the store; doing that per request would put a database round trip on the hot
path. Answers are cached briefly (valid tokens longer than invalid ones, so a token created a moment
ago is usable almost at once), concurrent misses for one token share one check, and a revoked token
stops working within `ttl` seconds.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from tiffin.core.scopes import may_call_deployment
from tiffin.gateway.parsing import Fields
from tiffin.gateway.replies import Reply, message

TokenCheck = Callable[[str], Awaitable[frozenset[str] | None]]
"""A bearer token -> its scopes, or None when it is unknown or expired."""

MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    scopes: frozenset[str] | None
    expires: float


class Unknown(Enum):
    """A token the cache has no fresh answer for: the store must be asked (asynchronously)."""

    TOKEN = 0


Scopes = frozenset[str] | None  # None: the token is unknown or expired
Lookup = Callable[[str], Scopes | Unknown]


@dataclass(frozen=True, slots=True)
class TokenToCheck:
    """The decision waits for the store's answer about this token."""

    token: str


class TokenCache:
    def __init__(
        self,
        check: TokenCheck,
        ttl: float = 5.0,
        negative_ttl: float = 1.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._now = now
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Future[Scopes]] = {}

    def lookup(self, token: str) -> Scopes | Unknown:
        """The cached answer, without waiting; `Unknown.TOKEN` when there is no fresh one."""
        entry = self._entries.get(token)
        if entry is not None and entry.expires > self._now():
            return entry.scopes
        return Unknown.TOKEN

    async def fetch(self, token: str) -> Scopes:
        """Ask the store (once, however many requests wait for the same token) and cache the answer."""
        pending = self._pending.get(token)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(token))
            self._pending[token] = pending
            pending.add_done_callback(lambda _: self._pending.pop(token, None))
        return await asyncio.shield(pending)

    async def _fetch(self, token: str) -> Scopes:
        scopes = await self._check(token)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        ttl = self._ttl if scopes is not None else self._negative_ttl
        self._entries[token] = _Entry(scopes, self._now() + ttl)
        return scopes


def authorize(fields: Fields, deployment: str, lookup: Lookup) -> Reply | TokenToCheck | None:
    """None when the request may call `deployment`; else the 401/403 to answer, or the token to check."""
    token = bearer_token(fields)
    if token is None:
        return message(
            401,
            f"Deployment {deployment} is protected: send an API token as `Authorization: Bearer <token>`.",
            ("www-authenticate", "Bearer"),
        )
    scopes = lookup(token)
    if isinstance(scopes, Unknown):
        return TokenToCheck(token)
    if scopes is None:
        return message(
            401,
            "The API token is invalid or expired: create a new one with `bentoml api-token create`.",
            ("www-authenticate", 'Bearer error="invalid_token"'),
        )
    if not may_call_deployment(scopes, deployment):
        return message(
            403,
            f"The API token may not call deployment {deployment}: give it the protected_endpoint"
            f" or protected_endpoint:{deployment} scope.",
        )
    return None


CHECK_FAILED = message(
    503, "The API token could not be checked right now: retry shortly.", ("retry-after", "1")
)


def bearer_token(fields: Fields) -> str | None:
    value = fields.get(b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
