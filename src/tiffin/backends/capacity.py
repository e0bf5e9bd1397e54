"""What this machine can run: CPU, memory and GPUs, as the container or host really allows.

Deployments reserve an instance type's resources, so tiffin must refuse a size the machine can
never satisfy with a sentence saying why, instead of starting replicas that starve. Counting
logical CPUs or physical RAM is not enough inside a container, so CPU affinity and cgroup limits
(v1 and v2) are honoured too, and a GPU counts for an instance type only if it is of the GPU type
the instance type names. The machine's GPUs also extend the built-in catalog: each GPU type present
that no instance type names gets an instance type of its own (`with_machine_gpus`). The readers take
their paths or text as arguments so they can be tested without the real files.
"""

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psutil

from tiffin.backends.gpu_types import gpu_type_of
from tiffin.core.instance_types import GiB, InstanceType, MiB, format_memory

CGROUP_ROOT = Path("/sys/fs/cgroup")
NVIDIA_SMI_TIMEOUT_S = 5.0
# cgroup v1 writes "no limit" as a huge page-aligned number (2**63 rounded down); anything
# from 1 EiB up is treated as unlimited.
_UNLIMITED_MEMORY = 1 << 60
# An instance type made for one of this machine's GPUs gets this share of the machine's CPU and memory
# per GPU, leaving room for Tiffin and for Services without GPUs; and a price per GiB of GPU memory
# in line with the built-in GPU types (a T4 at 0.51, an A100 80GB at 3.10).
_MACHINE_TYPE_SHARE = (3, 4)
_PRICE_PER_GPU_GIB = Decimal("0.04")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it."""

    index: int
    name: str
    memory_bytes: int

    @property
    def gpu_type(self) -> str:
        """The GPU type instance types name it by, e.g. `nvidia-h100` for "NVIDIA H100 80GB HBM3"."""
        return gpu_type_of(self.name)


@dataclass(frozen=True)
class HostCapacity:
    """The resources this machine offers deployments in total."""

    cpu_millicores: int
    memory_bytes: int
    gpus: tuple[GpuInfo, ...] = ()

    def can_host(self, instance_type: InstanceType) -> bool:
        """Whether one replica of `instance_type` fits on this machine at all."""
        return self.why_not(instance_type) is None

    def why_not(self, instance_type: InstanceType) -> str | None:
        """One sentence saying what `instance_type` needs that this machine lacks, or None."""
        shortfall = self.shortfall(instance_type)
        return f"Instance type {instance_type.name!r} {shortfall}." if shortfall else None

    def shortfall(self, instance_type: InstanceType) -> str | None:
        """What `instance_type` needs that this machine lacks, as a clause starting with "needs", or None."""
        if instance_type.cpu_millicores > self.cpu_millicores:
            return (
                f"needs {_cores(instance_type.cpu_millicores)}"
                f" but this machine has {_number_of_cores(self.cpu_millicores)}"
            )
        if instance_type.memory_bytes > self.memory_bytes:
            need, have = _sizes(instance_type.memory_bytes, self.memory_bytes)
            return f"needs {need} of memory but this machine has {have}"
        if instance_type.gpu_type and instance_type.gpu_count:
            return self._gpu_type_shortfall(instance_type.gpu_count, instance_type.gpu_type)
        if instance_type.gpu_count > len(self.gpus):
            return f"needs {_gpus(instance_type.gpu_count)} but this machine has {len(self.gpus) or 'none'}"
        return None

    def gpus_of_type(self, gpu_type: str) -> tuple[GpuInfo, ...]:
        """This machine's GPUs of `gpu_type` (any spelling `gpu_type_of` understands), by index."""
        wanted = gpu_type_of(gpu_type)
        return tuple(gpu for gpu in self.gpus if gpu.gpu_type == wanted)

    def _gpu_type_shortfall(self, count: int, gpu_type: str) -> str | None:
        matching = len(self.gpus_of_type(gpu_type))
        if count <= matching:
            return None
        need = f"needs {_typed_gpus(count, gpu_type)}; this machine has"
        if not self.gpus:
            return f"{need} no GPUs"
        have = f"only {matching}" if matching else "none"
        if matching == len(self.gpus):
            return f"{need} {have}"
        return f"{need} {have} (it has {say_gpus(count_by_type(self.gpus))})"


def count_by_type(gpus: Iterable[GpuInfo]) -> dict[str, int]:
    """How many GPUs of each type, types in the order of their first GPU."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.gpu_type] = counts.get(gpu.gpu_type, 0) + 1
    return counts


def say_gpus(counts: dict[str, int], in_use: dict[str, int] | None = None) -> str:
    """`"1 nvidia-h100"`, `"2 nvidia-h100 and 1 nvidia-tesla-t4"`, or `"no GPUs"`; with `in_use`,
    `"2 nvidia-h100 (in use: 1) and 1 nvidia-tesla-t4 (in use: 0)"`."""
    parts = [
        f"{count} {gpu_type}" + (f" (in use: {in_use.get(gpu_type, 0)})" if in_use is not None else "")
        for gpu_type, count in counts.items()
    ]
    if not parts:
        return "no GPUs"
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _typed_gpus(count: int, gpu_type: str) -> str:
    """`"an nvidia-tesla-t4 GPU"`, `"2 nvidia-l4 GPUs"`."""
    if count != 1:
        return f"{count} {gpu_type} GPUs"
    article = "an" if gpu_type.lower().startswith(("a", "e", "i", "o", "nvidia")) else "a"
    return f"{article} {gpu_type} GPU"


# --- the instance types this machine adds --------------------------------------------------------


def with_machine_gpus(catalog: Sequence[InstanceType], host: HostCapacity) -> list[InstanceType]:
    """The catalog, then one instance type for each GPU type this machine has that none in it names.

    `gpu.h100.1` for an H100: one GPU of that type, a share of the machine's CPU and memory per GPU,
    the GPU's name and memory in its description. Types named in the catalog are left as they are.
    """
    named = {gpu_type_of(item.gpu_type) for item in catalog if item.gpu_type}
    taken = {item.name for item in catalog}
    added = [
        _machine_type(gpu_type, host)
        for gpu_type in count_by_type(host.gpus)
        if gpu_type not in named and _machine_type_name(gpu_type) not in taken
    ]
    return [*catalog, *added]


def _machine_type_name(gpu_type: str) -> str:
    """`gpu.h100.1` for `nvidia-h100`, `gpu.rtx-6000-ada.1` for `nvidia-rtx-6000-ada`."""
    return f"gpu.{gpu_type.removeprefix('nvidia-').removeprefix('tesla-')}.1"


def _machine_type(gpu_type: str, host: HostCapacity) -> InstanceType:
    gpus = host.gpus_of_type(gpu_type)
    smallest = min(gpus, key=lambda gpu: gpu.memory_bytes)
    cpu = _per_gpu(host.cpu_millicores, len(host.gpus), 1000)
    memory = _per_gpu(host.memory_bytes, len(host.gpus), GiB)
    gpu_memory = f" ({_gib(smallest.memory_bytes)})" if smallest.memory_bytes else ""
    price = Decimal(smallest.memory_bytes) / GiB * _PRICE_PER_GPU_GIB
    return InstanceType(
        name=_machine_type_name(gpu_type),
        description=f"1 {smallest.name}{gpu_memory}, {_cores(cpu)}, {_gib(memory)} memory",
        group="gpu",
        price=f"{price:.4f}",
        cpu_millicores=cpu,
        memory_bytes=memory,
        gpu_count=1,
        gpu_type=gpu_type,
        gpu_memory=format_memory(smallest.memory_bytes) if smallest.memory_bytes else None,
    )


def _per_gpu(total: int, gpus: int, unit: int) -> int:
    """The share of `total` for one of `gpus` GPUs, in whole `unit`s: at least one, at most the total."""
    numerator, denominator = _MACHINE_TYPE_SHARE
    share = total * numerator // (denominator * gpus)
    return min(total, max(unit, share // unit * unit))


def _gib(size: int) -> str:
    return f"{f'{size / GiB:.1f}'.removesuffix('.0')} GiB"


def _number_of_cores(millicores: int) -> str:
    return f"{millicores / 1000:g}"


def _cores(millicores: int) -> str:
    unit = "CPU core" if millicores == 1000 else "CPU cores"
    return f"{_number_of_cores(millicores)} {unit}"


def _gpus(count: int) -> str:
    return "1 GPU" if count == 1 else f"{count} GPUs"


def _sizes(need: int, have: int) -> tuple[str, str]:
    """Both sizes in GiB to one decimal, or in MiB where that rounding would make them equal."""
    need_text, have_text = f"{need / GiB:.1f}", f"{have / GiB:.1f}"
    if need_text == have_text:
        return f"{need // MiB} MiB", f"{have // MiB} MiB"
    return f"{need_text.removesuffix('.0')} GiB", f"{have_text.removesuffix('.0')} GiB"


@functools.cache
def detect_host_capacity() -> HostCapacity:
    """This machine's capacity, measured once per process."""
    return HostCapacity(
        cpu_millicores=_detect_cpu_millicores(CGROUP_ROOT),
        memory_bytes=_detect_memory_bytes(CGROUP_ROOT),
        gpus=_parse_nvidia_smi(_query_nvidia_smi()),
    )


def _detect_cpu_millicores(cgroup_root: Path) -> int:
    millicores = _usable_cpus() * 1000
    limit = _cgroup_cpu_limit(cgroup_root)
    return min(millicores, limit) if limit is not None else millicores


def _usable_cpus() -> int:
    """CPUs this process may be scheduled on, falling back to the logical CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return psutil.cpu_count() or 1


def _detect_memory_bytes(cgroup_root: Path) -> int:
    total = psutil.virtual_memory().total
    limit = _cgroup_memory_limit(cgroup_root)
    return min(total, limit) if limit is not None else total


def _read(path: Path) -> str | None:
    """The stripped text of a small kernel file, or None when it cannot be read."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else 0
    except ValueError:
        return None
    return value if value > 0 else None


def _quota_millicores(quota: str | None, period: str | None) -> int | None:
    """Millicores for a CFS quota and period in microseconds; None when either is unset."""
    quota_us, period_us = _positive_int(quota), _positive_int(period)
    if quota_us is None or period_us is None:
        return None
    return max(1, quota_us * 1000 // period_us)


def _cgroup_cpu_limit(root: Path) -> int | None:
    """The cgroup CPU quota in millicores (v2 `cpu.max`, else v1 CFS files); None if unlimited."""
    cpu_max = _read(root / "cpu.max")
    if cpu_max is not None:
        quota, _, period = cpu_max.partition(" ")
        return _quota_millicores(quota, period or "100000")
    for controller in ("cpu", "cpu,cpuacct"):
        directory = root / controller
        limit = _quota_millicores(
            _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
        )
        if limit is not None:
            return limit
    return None


def _cgroup_memory_limit(root: Path) -> int | None:
    """The cgroup memory limit in bytes (v2 `memory.max`, else v1); None if unlimited."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        limit = _positive_int(_read(path))
        if limit is not None and limit < _UNLIMITED_MEMORY:
            return limit
    return None


def gpu_utilisation() -> dict[int, float]:
    """Each GPU's utilisation now, in %, by index ({} without nvidia-smi)."""
    found = {}
    for line in _query_nvidia_smi("index,utilization.gpu").splitlines():
        index, _, value = (field.strip() for field in line.partition(","))
        if index.isdigit():
            try:
                found[int(index)] = float(value)
            except ValueError:
                continue
    return found


def _query_nvidia_smi(fields: str = "index,name,memory.total") -> str:
    """nvidia-smi's CSV lines of `fields` per GPU, or "" when there is no nvidia-smi or it fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return ""
    command = [executable, f"--query-gpu={fields}", "--format=csv,noheader,nounits"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    return result.stdout


def _parse_nvidia_smi(text: str) -> tuple[GpuInfo, ...]:
    """GPUs from lines like `0, NVIDIA H100 80GB HBM3, 81559` (memory in MiB)."""
    gpus = (_parse_gpu_line(line) for line in text.splitlines())
    return tuple(gpu for gpu in gpus if gpu is not None)


def _parse_gpu_line(line: str) -> GpuInfo | None:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) < 3 or not fields[0].isdigit():
        return None
    memory_mib = fields[-1]
    return GpuInfo(
        index=int(fields[0]),
        name=", ".join(fields[1:-1]),
        memory_bytes=int(memory_mib) * MiB if memory_mib.isdigit() else 0,
    )
