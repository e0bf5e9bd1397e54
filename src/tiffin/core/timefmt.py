"""Datetime formats of the BentoCloud wire protocol.

The client sends naive `"%Y-%m-%d %H:%M:%S.%f"` strings and reads any ISO-8601 value back; we always
answer RFC 3339 in UTC with a `Z`.
"""

from datetime import UTC, datetime

from tiffin.core.errors import BadRequest

_CLIENT_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")


def to_wire(value: datetime | None) -> str | None:
    """RFC 3339 in UTC, or None."""
    if value is None:
        return None
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_utc(value: datetime) -> datetime:
    """Treat a naive datetime (as SQLite returns them) as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_client_time(value: str | None, field: str, *, local: bool = False) -> datetime | None:
    """Parse a datetime the client sent; `local` marks wall-clock time of the client's zone."""
    if value in (None, ""):
        return None
    assert value is not None
    parsed = _parse_any(value, field)
    if parsed.tzinfo is None:
        parsed = parsed.astimezone() if local else parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _parse_any(value: str, field: str) -> datetime:
    for fmt in _CLIENT_FORMATS:
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"`{field}` must be a date like 2030-12-31 00:00:00.000000, not {value!r}."
        ) from None
