"""Kubernetes resource quantities: the one grammar for the amounts the bentoml client sends.

The client types autoscaling metric values as a Kubernetes `resource.Quantity`, and BentoCloud's docs
write them as strings (`value: "80"`); CPU and memory amounts use the same notation (`"500m"`,
`"2Gi"`). Everything that reads such an amount parses it here, so `"80"`, `80`, `"500m"` (0.5),
`"1.5"`, `"1e3"` and `"2Gi"` mean the same thing wherever they appear.

Grammar (Kubernetes' `resource.ParseQuantity`): an optionally signed decimal number, then either a
binary suffix (`Ki Mi Gi Ti Pi Ei`), a decimal exponent (`e3`, `E-2`) or a decimal suffix
(`n u m k M G T P E`, or none). Values are exact `Decimal`s; callers decide which are acceptable, or
use the readings below: CPU in millicores, memory in bytes, whole counts (GPUs), positive targets.
"""

import math
import re
from decimal import Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d{1,3})|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?))",
    re.ASCII,
)
MAX_TEXT = 64  # longer strings are not quantities anyone means


def parse_quantity(value: object) -> Decimal | None:
    """The exact amount of a quantity given as a number or a string; None when it is not one.

    Booleans, NaN and infinities are not quantities (YAML's `yes` and `.inf` must not become 1 or ∞).
    """
    text = _text(value)
    match = _QUANTITY.fullmatch(text) if text is not None else None
    if match is None:
        return None
    number = Decimal(match["number"])
    if match["exponent"] is not None:
        return number.scaleb(int(match["exponent"][1:]))
    suffix = match["suffix"]
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, str) and len(value) <= MAX_TEXT:
        return value.strip()
    return None


def positive_quantity(value: object) -> float | None:
    """A quantity above zero as a float (autoscaling targets), or None when `value` is not one."""
    amount = parse_quantity(value)
    if amount is None or amount <= 0:
        return None
    return float(amount)


def cpu_millicores(value: object) -> int | None:
    """Millicores for a CPU amount like `2`, `"0.5"` or `"500m"`; None when it is not one."""
    amount = parse_quantity(value)
    return _whole(amount * 1000) if amount is not None and amount >= 0 else None


def memory_bytes(value: object) -> int | None:
    """Bytes for a size like `4Gi`, `512M` or `1073741824`; None when it is not one.

    Also read as people write them: `1K` for `1k`, and spaces inside (`4 Gi`).
    """
    if isinstance(value, str):
        value = value.replace(" ", "").removesuffix("K") + ("k" if value.endswith("K") else "")
    amount = parse_quantity(value)
    return _whole(amount) if amount is not None and amount >= 0 else None


def whole_count(value: object) -> int | None:
    """A whole, non-negative number given as a number or quantity (`1`, `"1"`), such as GPUs; else None."""
    amount = parse_quantity(value)
    return _whole(amount) if amount is not None and amount >= 0 else None


def _whole(number: Decimal) -> int | None:
    """`number` as an int when it has no fractional part, else None."""
    if number != number.to_integral_value():
        return None
    return int(number)
