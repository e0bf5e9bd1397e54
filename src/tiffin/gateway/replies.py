"""Answers the gateway gives itself: JSON bodies with one sentence saying what to do.

Every refusal (auth, terminated, not ready, unreachable replica) is one of these, so no request ever
ends in a traceback page or an empty connection reset.
"""

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = field(default=())


def message(status: int, text: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, {"message": text}, headers)


def render(reply: Reply, close: bool, head_only: bool = False) -> bytes:
    """The reply as HTTP/1.1 bytes; `head_only` for answers to HEAD requests."""
    body = json.dumps(reply.body, separators=(",", ":")).encode()
    lines = [
        f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    if close:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
