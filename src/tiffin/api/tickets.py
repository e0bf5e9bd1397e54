"""Presigned URLs: signed, expiring tickets that let an unauthenticated PUT/GET reach one artifact.

The client sends presigned requests without any token (docs/bentocloud-api.md §1.2), so the URL itself must
carry the right.
"""

from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from pydantic import TypeAdapter, ValidationError

from tiffin.core.clock import Clock
from tiffin.core.errors import Forbidden


@dataclass(frozen=True)
class Ticket:
    action: str
    organization_id: int
    kind: str
    repository: str
    version: str
    upload_id: str = ""
    part_number: int = 0


_TICKET = TypeAdapter(Ticket)


class TicketSigner:
    def __init__(self, key: bytes, ttl_seconds: int, clock: Clock) -> None:
        self._fernet = Fernet(key)
        self._ttl = ttl_seconds
        self._clock = clock

    def sign(self, ticket: Ticket) -> str:
        return self._fernet.encrypt_at_time(_TICKET.dump_json(ticket), self._now()).decode()

    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    def verify(self, token: str, *actions: str) -> Ticket:
        """The ticket signed into `token`, if it is intact, unexpired and for one of `actions`."""
        try:
            ticket = _TICKET.validate_json(
                self._fernet.decrypt_at_time(token.encode(), self._ttl, self._now())
            )
        except (InvalidToken, ValidationError, ValueError):
            raise Forbidden(
                "This presigned URL is invalid or has expired: ask the server for a new one."
            ) from None
        if ticket.action not in actions:
            raise Forbidden(f"This presigned URL is for {ticket.action}, not {' or '.join(actions)}.")
        return ticket
