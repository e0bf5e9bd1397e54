"""Query parameters as the client sends them: an empty value means "not supplied" (docs/bentocloud-api.md
§1.5)."""

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


def filter_terms(search: str | None, q: str | None) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Split `search` and the `q` filter into plain words and `label:KEY=VALUE` pairs."""
    words: list[str] = []
    labels: list[tuple[str, str]] = []
    for term in f"{search or ''} {q or ''}".split():
        if term.startswith("label:"):
            key, sep, value = term.removeprefix("label:").partition("=")
            if not key or not sep:
                raise BadRequest(f"The filter {term!r} must look like label:KEY=VALUE.")
            labels.append((key, value))
        else:
            words.append(term)
    return tuple(words), tuple(labels)
