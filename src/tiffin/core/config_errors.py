"""What pydantic refuses in a deployment config, as the one sentence a 400 carries.

The config's checks say what a value must be ("must be one of cpu, memory, gpu, qps"); pydantic knows
where the value was (keys and list indexes). The client prints the message as it is, so the sentence
names the field the way the user wrote it in their config file, e.g.
"`services.Echo.scaling.policy.metrics[0].type` must be one of cpu, memory, gpu, qps.", and only the
first refused field is named, as a user fixes one thing at a time.
"""

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from tiffin.core.errors import BadRequest

CONFIG_ERROR = "tiffin_config"  # the error type of every check written for the config
MAX_SHOWN = 80  # characters of a refused value quoted back


def invalid(must: str) -> PydanticCustomError:
    """The error a check raises; `must` goes on from the field's path ("must be true or false")."""
    return PydanticCustomError(CONFIG_ERROR, must)


def invalid_at(loc: tuple[int | str, ...], must: str, value: object) -> ValidationError:
    """`invalid`, for a field below the value being checked (a model's field, a list item's)."""
    return ValidationError.from_exception_data(
        CONFIG_ERROR, [InitErrorDetails(type=invalid(must), loc=loc, input=value)]
    )


def shown(value: object) -> str:
    """A refused value as the message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 1]}…"


def refusal(error: ValidationError) -> BadRequest:
    """The 400 for the first refused field."""
    first = error.errors(include_url=False)[0]
    return BadRequest(f"`{field_path(first['loc'])}` {_what_is_wrong(first)}.")


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("services", "Echo", "envs", 0, "name")` as `services.Echo.envs[0].name`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path or "config"


def _what_is_wrong(error: ErrorDetails) -> str:
    if error["type"] == CONFIG_ERROR:
        return error["msg"]
    message = error["msg"].rstrip(".")  # pydantic's own words, for a check not written for the config
    return f"is invalid: {message[:1].lower()}{message[1:]}"
