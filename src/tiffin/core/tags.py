"""BentoML tag rules (`name:version`), so bad names are refused before anything is stored."""

import re

from tiffin.core.errors import BadRequest

MAX_TAG_PART = 63
_TAG_PART = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")


def check_tag_part(value: object, what: str) -> str:
    """Return `value` if it is a valid tag name or version, else raise a 400 naming `what`."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"The {what} must be a non-empty string.")
    if len(value) > MAX_TAG_PART:
        raise BadRequest(f"The {what} {value!r} is longer than {MAX_TAG_PART} characters.")
    if not _TAG_PART.fullmatch(value):
        raise BadRequest(
            f"The {what} {value!r} is not a valid BentoML tag part: use lowercase letters, digits,"
            " '-', '_' and '.', starting and ending with a letter or digit."
        )
    return value
