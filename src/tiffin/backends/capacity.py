"""What this machine can run: CPU, memory and GPUs, as the container or host really allows.

Deployments reserve an instance type's resources, so tiffin must refuse a size the machine can
never satisfy with a sentence saying why, instead of starting replicas that starve. Counting
logical CPUs or physical RAM is not enough inside a container, so CPU affinity and cgroup limits
(v1 and v2) are honoured too. The readers take their paths or text as arguments so they can be
tested without the real files.
"""

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from tiffin.core.instance_types import GiB, InstanceType, MiB

CGROUP_ROOT = Path("/sys/fs/cgroup")
NVIDIA_SMI_TIMEOUT_S = 5.0
# cgroup v1 writes "no limit" as a huge page-aligned number (2**63 rounded down); anything
# from 1 EiB up is treated as unlimited.
_UNLIMITED_MEMORY = 1 << 60


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it."""

    index: int
    name: str
    memory_bytes: int


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
        needs = f"Instance type {instance_type.name!r} needs"
        if instance_type.cpu_millicores > self.cpu_millicores:
            return (
                f"{needs} {_cores(instance_type.cpu_millicores)}"
                f" but this machine has {_number_of_cores(self.cpu_millicores)}."
            )
        if instance_type.memory_bytes > self.memory_bytes:
            need, have = _sizes(instance_type.memory_bytes, self.memory_bytes)
            return f"{needs} {need} of memory but this machine has {have}."
        if instance_type.gpu_count > len(self.gpus):
            return (
                f"{needs} {_gpus(instance_type.gpu_count)} but this machine has {len(self.gpus) or 'none'}."
            )
        return None


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
