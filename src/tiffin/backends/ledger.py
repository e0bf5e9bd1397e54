"""The capacity ledger: what this machine has already given to live replicas.

Local replicas must never be overcommitted: a replica that starts on a machine without room for it
starves its neighbours, and the user sees slowness instead of a reason. The ledger hands out CPU
millicores, memory bytes and GPU indices from `HostCapacity`, says in one sentence why a request
must wait, and pins each replica's CPU share to the least used cores. A request that names a GPU type
only gets GPUs of that type; one without a type takes any free GPU. Pure bookkeeping: no processes,
no clock.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tiffin.backends.capacity import GpuInfo, HostCapacity, count_by_type, say_gpus
from tiffin.backends.protocol import Resources

_MiB = 1024 * 1024
_GiB = 1024 * _MiB


@dataclass(frozen=True)
class Allocation:
    """What one replica was given. Empty `cpu_cores` means "not pinned"."""

    cpu_millicores: int = 0
    memory_bytes: int = 0
    gpu_indices: tuple[int, ...] = ()
    cpu_cores: tuple[int, ...] = ()


@dataclass(frozen=True)
class Shortage:
    """Why a request does not fit now, as one sentence for the user."""

    reason: str


class Ledger:
    """Allocations of live replicas, checked against the machine's capacity."""

    def __init__(self, host: HostCapacity, cores: Sequence[int]) -> None:
        self._host = host
        self._cores = tuple(sorted(cores))
        self._given: dict[str, Allocation] = {}

    def reserve(self, replica_id: str, resources: Resources) -> Allocation | Shortage:
        """Give `resources` to `replica_id` if they fit, else say what is missing."""
        shortage = self._shortage(resources)
        if shortage is not None:
            return shortage
        cpu = resources.cpu_millicores or 0
        allocation = Allocation(
            cpu_millicores=cpu,
            memory_bytes=resources.memory_bytes or 0,
            gpu_indices=self._free_gpus(resources.gpu_type)[: resources.gpus],
            cpu_cores=self._least_used_cores(math.ceil(cpu / 1000)),
        )
        self._given[replica_id] = allocation
        return allocation

    def restore(self, replica_id: str, allocation: Allocation) -> None:
        """Record what an adopted replica already holds (it runs, so it counts even if over)."""
        self._given[replica_id] = allocation

    def release(self, replica_id: str) -> None:
        self._given.pop(replica_id, None)

    def _shortage(self, resources: Resources) -> Shortage | None:
        host, used = self._host, self._given.values()
        cpu = _Measure(resources.cpu_millicores or 0, host.cpu_millicores, "{}m", " CPU")
        memory = _Measure(resources.memory_bytes or 0, host.memory_bytes, "{}", " of memory", _size)
        for measure, in_use in (
            (cpu, sum(a.cpu_millicores for a in used)),
            (memory, sum(a.memory_bytes for a in used)),
        ):
            shortage = measure.shortage(in_use)
            if shortage is not None:
                return shortage
        if resources.gpus and resources.gpu_type:
            return self._typed_gpu_shortage(resources.gpus, resources.gpu_type)
        gpus = _Measure(resources.gpus, len(host.gpus), "{}", " GPU(s)")
        return gpus.shortage(sum(len(a.gpu_indices) for a in used))

    def _typed_gpu_shortage(self, need: int, gpu_type: str) -> Shortage | None:
        """Why `need` GPUs of `gpu_type` cannot be had now, or None when enough of them are free."""
        free, of_type = len(self._free_gpus(gpu_type)), len(self._host.gpus_of_type(gpu_type))
        if need <= free:
            return None
        gpus = f"{need} {gpu_type} GPU" + ("" if need == 1 else "s")
        if need > of_type:
            return Shortage(f"needs {gpus}; this machine has {self._gpus_in_use()}")
        return Shortage(f"waiting for {gpus}: {free} of {of_type} free on this machine")

    def _gpus_in_use(self) -> str:
        """`"1 nvidia-h100 (in use: 0)"`, `"2 nvidia-h100 (in use: 1) and 1 nvidia-l4 (in use: 0)"`."""
        used = self._used_gpus()
        busy = count_by_type(gpu for gpu in self._host.gpus if gpu.index in used)
        return say_gpus(count_by_type(self._host.gpus), busy)

    def _free_gpus(self, gpu_type: str | None = None) -> tuple[int, ...]:
        """Free GPUs by index: of `gpu_type` only when one is named, else of any type."""
        used = self._used_gpus()
        candidates: tuple[GpuInfo, ...] = self._host.gpus_of_type(gpu_type) if gpu_type else self._host.gpus
        return tuple(gpu.index for gpu in candidates if gpu.index not in used)

    def _used_gpus(self) -> set[int]:
        return {index for allocation in self._given.values() for index in allocation.gpu_indices}

    def _least_used_cores(self, count: int) -> tuple[int, ...]:
        if count <= 0 or count >= len(self._cores):
            return ()
        load = dict.fromkeys(self._cores, 0.0)
        for allocation in self._given.values():
            for core in allocation.cpu_cores:
                if core in load:
                    load[core] += allocation.cpu_millicores / len(allocation.cpu_cores)
        return tuple(sorted(sorted(self._cores, key=lambda core: (load[core], core))[:count]))


@dataclass(frozen=True)
class _Measure:
    """One kind of resource: how much is asked, how much the machine has, how to say amounts."""

    need: int
    total: int
    amount: str
    noun: str
    show: Callable[[int], str] = str

    def shortage(self, in_use: int) -> Shortage | None:
        free = max(0, self.total - in_use)
        if self.need <= free:
            return None
        need = self._say(self.need) + self.noun
        if self.need > self.total:
            return Shortage(f"needs {need} but this machine has {self._say(self.total)} in total")
        return Shortage(f"waiting for {need}: {self._say(free)} free on this machine")

    def _say(self, value: int) -> str:
        return self.amount.format(self.show(value))


def _size(size: int) -> str:
    if size >= _GiB:
        return f"{size / _GiB:.1f} GiB".replace(".0 GiB", " GiB")
    return f"{size // _MiB} MiB"
