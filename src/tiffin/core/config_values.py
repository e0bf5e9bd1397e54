"""The building blocks of the deployment-config models: the base model, and the kinds of value a config
holds, each checked with a sentence that says what to write instead.

A config comes from YAML files and `bentoml.deployment.create(...)` dicts, so a value may be any JSON
type. pydantic's lax conversions would read `"3"` or `2.0` as a replica count and `"yes"` as true; a
config that says so is refused instead, so it means the same here as on BentoCloud. Amounts the client
sends as Kubernetes quantities are read by `tiffin.core.quantity`, the one grammar for them. Unknown keys
are ignored, as BentoCloud ignores them: the client sends many, most of them null.
"""

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)

from tiffin.core import quantity
from tiffin.core.config_errors import invalid, shown

T = TypeVar("T")
M = TypeVar("M", bound="ConfigModel")


class ConfigModel(BaseModel):
    """A mapping of the config. `shape` describes it for a user who wrote something else there."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    shape: ClassVar[str] = "a mapping"

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            raise invalid(f"must be {cls.shape}, not {shown(data)}")
        return data

    def overlaid(self, top: Self | None) -> Self:
        """This, with every value `top` gives over it (null counts as not given), key by key."""
        if top is None:
            return self
        given = {name: getattr(top, name) for name in top.model_fields_set}
        return self.model_copy(update={name: value for name, value in given.items() if value is not None})


def leniently(model: type[M], data: object) -> M:
    """`data` as `model`, without the keys it refuses. For the bento's own settings (`@bentoml.service(...)`),
    read by the reconciler: a value Tiffin cannot read there falls back to its default instead of failing
    every reconcile of the deployment, and `config_overrides` can set it."""
    if not isinstance(data, Mapping):
        return model()
    try:
        return model.model_validate(data)
    except ValidationError as error:
        refused = {problem["loc"][0] for problem in error.errors() if problem["loc"]}
        return model.model_validate({k: v for k, v in data.items() if k not in refused})


def required() -> Any:
    """A field the config must give: a missing one is checked as null, so its refusal says what it must be."""
    return Field(default=None, validate_default=True)


def accepts(read: Callable[[Any], T | None], must: str) -> PlainValidator:
    """A check keeping what `read` makes of a value; where `read` gives None, "`x` {must}, not 3."."""

    def check(value: object) -> T:
        result = read(value)
        if result is None:
            raise invalid(f"{must}, not {shown(value)}")
        return result

    return PlainValidator(check)


def one_of(*choices: T) -> PlainValidator:
    """A check keeping the choice equal to a value ("must be one of fast, stable, disabled")."""

    def check(value: object) -> T:
        chosen = next((choice for choice in choices if choice == value), None)
        if chosen is None:
            raise invalid(f"must be one of {', '.join(str(choice) for choice in choices)}")
        return chosen

    return PlainValidator(check)


def a_list(of: str) -> BeforeValidator:
    """Refuses anything but a list (pydantic would also take a tuple, a set or a mapping's keys)."""

    def check(value: object) -> object:
        if not isinstance(value, list):
            raise invalid(f"must be a list of {of}, not {shown(value)}")
        return value

    return BeforeValidator(check)


def whole(minimum: int, maximum: int | None = None) -> Callable[[object], int | None]:
    """Reads an int from `minimum` to `maximum`: not a bool, not 2.0, not "2"."""

    def read(value: object) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return value if minimum <= value and (maximum is None or value <= maximum) else None

    return read


def positive_number(value: object) -> float | None:
    """A finite number above 0 (an int or a float, not a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def text(value: object) -> str | None:
    return value if isinstance(value, str) else None


Count = Annotated[int, accepts(whole(0), "must be a whole number of at least 0")]
AtLeastOne = Annotated[int, accepts(whole(1), "must be a whole number of at least 1")]
Flag = Annotated[bool, accepts(flag, "must be true or false")]
_CPU = "must be a number of cores like 2 or 0.5, or of millicores like 500m"
_MEMORY = "must be a size like 4Gi, 512Mi, 2G or a number of bytes"
Millicores = Annotated[int, accepts(quantity.cpu_millicores, _CPU)]
Bytes = Annotated[int, accepts(quantity.memory_bytes, _MEMORY)]
Gpus = Annotated[int, accepts(quantity.whole_count, "must be a whole number of GPUs like 0 or 1")]
