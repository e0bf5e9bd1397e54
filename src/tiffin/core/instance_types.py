"""The instance-type catalog: the named sizes users pick with `--instance-type`.

BentoCloud deployments ask for a named size (`cpu.2`, `gpu.t4.1`) rather than raw resources, and
the unmodified bentoml CLI lists and checks those names against the server. tiffin ships
BentoCloud's documented sizes so existing commands keep working, and lets an operator replace
them with a YAML file describing what their machines really offer.

Pure: nothing here looks at the host; `tiffin.backends.capacity` says what this machine can run, and
adds to the built-ins a type for each GPU type of this machine that they do not name.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from tiffin.core import quantity
from tiffin.core.errors import BadRequest

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

_REQUIRED_FIELDS = ("name", "description", "price", "cpu", "memory")
_OPTIONAL_FIELDS = ("gpu", "gpu_type", "gpu_memory")
_ALL_FIELDS = _REQUIRED_FIELDS + _OPTIONAL_FIELDS


@dataclass(frozen=True)
class InstanceType:
    """One named size a deployment can ask for, in the resources it reserves."""

    name: str
    description: str
    group: str
    price: str
    cpu_millicores: int
    memory_bytes: int
    gpu_count: int = 0
    gpu_type: str | None = None
    gpu_memory: str | None = None

    def requests(self) -> dict[str, str]:
        """Kubernetes-style resource strings, e.g. {"cpu": "500m", "memory": "2Gi", "gpu": "1"}."""
        result = {
            "cpu": format_cpu(self.cpu_millicores),
            "memory": format_memory(self.memory_bytes),
        }
        if self.gpu_count:
            result["gpu"] = str(self.gpu_count)
        return result


def format_cpu(millicores: int) -> str:
    """`"2"` for whole cores, `"500m"` otherwise, as Kubernetes writes CPU amounts."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_memory(size: int) -> str:
    """The largest exact binary unit among Gi, Mi and Ki (`"2Gi"`, `"512Mi"`), else plain bytes."""
    for suffix, unit in (("Gi", GiB), ("Mi", MiB), ("Ki", KiB)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _amount_text(value: object) -> str | None:
    """The text of a YAML scalar that may hold an amount; None for bools and non-scalars."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value.strip()
    return None


def parse_cpu(value: str | int | float) -> int:
    """Millicores for a CPU amount: cores (`2`, `"2"`, `"0.5"`) or millicores (`"500m"`)."""
    millicores = quantity.cpu_millicores(value)
    if millicores is None:
        raise BadRequest(
            f"The CPU amount {value!r} must be a number of cores like 2 or 0.5, or of millicores like 500m."
        )
    return millicores


def parse_memory(value: str | int) -> int:
    """Bytes for a size: binary (`Ki Mi Gi Ti`), decimal (`K M G T`) or a plain byte count."""
    size = quantity.memory_bytes(value)
    if size is None:
        raise BadRequest(
            f"The memory size {value!r} must be a size like 4Gi, 512Mi, 2G or a number of bytes."
        )
    return size


def _builtin(
    name: str,
    description: str,
    price: str,
    cpu_millicores: int,
    memory: str,
    *,
    gpu_type: str | None = None,
    gpu_memory: str | None = None,
) -> InstanceType:
    gpu_count = 1 if gpu_type else 0
    return InstanceType(
        name=name,
        description=description,
        group="gpu" if gpu_count else "cpu",
        price=price,
        cpu_millicores=cpu_millicores,
        memory_bytes=parse_memory(memory),
        gpu_count=gpu_count,
        gpu_type=gpu_type,
        gpu_memory=gpu_memory,
    )


BUILTIN_INSTANCE_TYPES: tuple[InstanceType, ...] = (
    _builtin("cpu.1", "0.5 CPU core, 2 GiB memory", "0.0250", 500, "2Gi"),
    _builtin("cpu.2", "1 CPU core, 2 GiB memory", "0.0480", 1000, "2Gi"),
    _builtin("cpu.4", "2 CPU cores, 8 GiB memory", "0.1100", 2000, "8Gi"),
    _builtin("cpu.8", "4 CPU cores, 16 GiB memory", "0.2200", 4000, "16Gi"),
    _builtin(
        "gpu.t4.1",
        "1 NVIDIA T4, 4 CPU cores, 16 GiB memory",
        "0.5100",
        4000,
        "16Gi",
        gpu_type="nvidia-tesla-t4",
        gpu_memory="16Gi",
    ),
    _builtin(
        "gpu.l4.1",
        "1 NVIDIA L4, 4 CPU cores, 16 GiB memory",
        "0.8300",
        4000,
        "16Gi",
        gpu_type="nvidia-l4",
        gpu_memory="24Gi",
    ),
    _builtin(
        "gpu.a100.1",
        "1 NVIDIA A100 80GB, 12 CPU cores, 85 GiB memory",
        "3.1000",
        12000,
        "85Gi",
        gpu_type="nvidia-tesla-a100",
        gpu_memory="80Gi",
    ),
)


def find(catalog: Iterable[InstanceType], name: str) -> InstanceType | None:
    """The instance type called `name`, or None when the catalog has none."""
    return next((t for t in catalog if t.name == name), None)


def load_catalog(path: Path) -> list[InstanceType]:
    """The operator's catalog from the YAML file at `path`, or the built-ins if there is none."""
    entries = _read_entries(path)
    if entries is None:
        return list(BUILTIN_INSTANCE_TYPES)
    catalog = [_parse_entry(f"{path}: instance_types[{i}]", e) for i, e in enumerate(entries)]
    _check_unique_names(path, catalog)
    return catalog


def _read_entries(path: Path) -> list[Any] | None:
    """The raw `instance_types` list in the file, or None when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(
            f"{path} could not be read ({_one_line(exc)}); make it a readable UTF-8 YAML file"
            " or remove it to use the built-in instance types."
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadRequest(
            f"{path} is not valid YAML ({_yaml_problem(exc)}); fix the syntax"
            " or remove the file to use the built-in instance types."
        ) from exc
    entries = data.get("instance_types") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise BadRequest(f"{path}: add a top-level instance_types list of instance types.")
    if not entries:
        raise BadRequest(f"{path}: instance_types must list at least one instance type.")
    return entries


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What the YAML parser objected to and where, in a few words."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem and exc.problem_mark:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return _one_line(exc)


def _parse_entry(where: str, entry: object) -> InstanceType:
    """One validated catalog entry; `where` (file and index) starts every error message."""
    if not isinstance(entry, dict):
        raise BadRequest(f"{where} must be a mapping with {', '.join(_REQUIRED_FIELDS)}, not {entry!r}.")
    _check_fields(where, entry)
    gpu_count = _gpu_count(where, entry.get("gpu"))
    return InstanceType(
        name=_name(where, entry["name"]),
        description=_description(where, entry["description"]),
        group="gpu" if gpu_count else "cpu",
        price=_price(where, entry["price"]),
        cpu_millicores=_cpu(where, entry["cpu"]),
        memory_bytes=_size(where, "memory", entry["memory"], "4Gi"),
        gpu_count=gpu_count,
        gpu_type=_gpu_type(where, gpu_count, entry.get("gpu_type")),
        gpu_memory=_gpu_memory(where, entry.get("gpu_memory")),
    )


def _check_fields(where: str, entry: dict[Any, Any]) -> None:
    for key in entry:
        if key not in _ALL_FIELDS:
            raise BadRequest(f"{where} has an unknown field {key!r}; use only {', '.join(_ALL_FIELDS)}.")
    for field in _REQUIRED_FIELDS:
        if field not in entry:
            raise BadRequest(f"{where}.{field} is missing; add it.")


def _name(where: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise BadRequest(
            f"{where}.name must be a name like cpu.small made of letters, digits, '.', '-'"
            f" and '_', not {value!r}."
        )
    return value


def _description(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}.description must be a string, not {value!r}.")
    return value


def _price(where: str, value: object) -> str:
    text = _amount_text(value)
    try:
        number = Decimal(text) if text else None
    except InvalidOperation:
        number = None
    if text is None or number is None or not number.is_finite() or number < 0:
        raise BadRequest(f'{where}.price must be a non-negative price like "0.1", not {value!r}.')
    return text


def _cpu(where: str, value: object) -> int:
    millicores = quantity.cpu_millicores(value)
    if not millicores:
        raise BadRequest(f"{where}.cpu must be a positive CPU amount like 2, 0.5 or 500m, not {value!r}.")
    return millicores


def _size(where: str, field: str, value: object, example: str) -> int:
    size = quantity.memory_bytes(value)
    if not size:
        raise BadRequest(f"{where}.{field} must be a size like {example}, not {value!r}.")
    return size


def _gpu_count(where: str, value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{where}.gpu must be a whole number of GPUs like 0 or 1, not {value!r}.")
    return value


def _gpu_type(where: str, gpu_count: int, value: object) -> str | None:
    if gpu_count == 0:
        if value is not None:
            raise BadRequest(
                f"{where}.gpu_type is set but gpu is 0; set gpu to the number of GPUs or remove gpu_type."
            )
        return None
    if value is None:
        raise BadRequest(
            f"{where}.gpu_type is missing; add the GPU model, like nvidia-l4, since gpu is {gpu_count}."
        )
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}.gpu_type must be a GPU model like nvidia-l4, not {value!r}.")
    return value.strip()


def _gpu_memory(where: str, value: object) -> str | None:
    if value is None:
        return None
    return format_memory(_size(where, "gpu_memory", value, "24Gi"))


def _check_unique_names(path: Path, catalog: list[InstanceType]) -> None:
    first_index: dict[str, int] = {}
    for index, instance_type in enumerate(catalog):
        earlier = first_index.setdefault(instance_type.name, index)
        if earlier != index:
            raise BadRequest(
                f"{path}: instance_types[{index}].name {instance_type.name!r} is already used by"
                f" instance_types[{earlier}]; give each instance type a unique name."
            )
