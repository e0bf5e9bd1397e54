"""Query parameters as the client sends them: an empty value means "not supplied" (§1.5)."""

from tiffin.core.errors import BadRequest

MAX_PAGE = 1000


def int_param(raw: str | None, name: str, default: int, maximum: int = MAX_PAGE) -> int:
    if raw in (None, ""):
        return default
    assert raw is not None
    if not raw.isdigit():
        raise BadRequest(f"The query parameter `{name}` must be a whole number, not {raw!r}.")
    return min(int(raw), maximum)


def text_param(raw: str | None) -> str | None:
    return raw or None


def bool_param(raw: str | None) -> bool:
    return (raw or "").lower() in ("true", "1", "yes")
