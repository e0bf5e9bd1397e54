"""Per-Service load, gathered at every reconcile step and summed up once per autoscaling evaluation.

Each step samples what the gateway counted (answers per replica, requests in flight, requests waiting)
and what the backend measured (CPU seconds and memory of each replica's process tree). Between two
evaluations a `Window` accumulates them; `measure()` turns the window into the totals the autoscaling
policy divides by its targets (qps over the window, average in-flight, average CPU and memory in % of
what each replica requested) and starts the next window.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tiffin.autoscaler import Measurement
from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus, Usage
from tiffin.reconciler.replica_set import ReplicaSet
from tiffin.routing.traffic import Traffic

SlotKey = tuple[str, str]  # (deployment, Service)
DEFAULT_CPU_REQUEST_CORES = 1.0  # a replica that requests no CPU is measured against one core


@dataclass(frozen=True)
class Requests:
    """What one replica of a Service asked for: the base of its cpu and memory percentages."""

    cpu_cores: float | None
    memory_bytes: int | None


@dataclass
class Window:
    started: float
    arrived: int = 0
    samples: int = 0
    in_flight: float = 0.0
    cpu_percent: float = 0.0
    cpu_samples: int = 0
    memory_percent: float = 0.0
    memory_samples: int = 0
    gpu_percent: float = 0.0
    gpu_samples: int = 0
    queued: int = 0


@dataclass
class Signals:
    windows: dict[SlotKey, Window] = field(default_factory=dict)
    _arrived: dict[SlotKey, int] = field(default_factory=dict)  # the gateway's last count, by Service
    _cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # by replica id: (seconds, at)

    def sample(
        self,
        now: float,
        observed: ReplicaSet,
        traffic: Traffic,
        usage: Mapping[str, Usage],
        requests: Mapping[SlotKey, Requests],
    ) -> None:
        running = observed.get(ReplicaPhase.RUNNING)
        for key, asked in requests.items():
            window = self.windows.setdefault(key, Window(now))
            mine = observed.of(*key).get(ReplicaPhase.RUNNING)
            self._count_traffic(window, key, mine, traffic)
            self._count_usage(window, mine, usage, asked, now)
            queue = traffic.queues.get(key)
            window.queued = max(window.queued, queue.waiting if queue else 0)
        self._forget_gone(running)

    def measure(self, key: SlotKey, replicas: int, now: float) -> Measurement:
        """The window's totals for a Service now running `replicas`; a new window starts."""
        window = self.windows.get(key) or Window(now)
        self.windows[key] = Window(now)
        elapsed = now - window.started
        return Measurement(
            replicas=replicas,
            cpu=window.cpu_percent / window.cpu_samples if window.cpu_samples else None,
            memory=window.memory_percent / window.memory_samples if window.memory_samples else None,
            gpu=window.gpu_percent / window.gpu_samples if window.gpu_samples else None,
            qps=window.arrived / elapsed if elapsed > 0 else None,
            in_flight=window.in_flight / window.samples if window.samples else 0.0,
            queued=float(window.queued),
        )

    def _count_traffic(
        self, window: Window, key: SlotKey, mine: Sequence[ReplicaStatus], traffic: Traffic
    ) -> None:
        arrived = traffic.arrivals.get(key, 0)
        window.arrived += max(0, arrived - self._arrived.get(key, 0))  # a new gateway counts from 0
        self._arrived[key] = arrived
        seen = [traffic.replicas.get(r.url or "") for r in mine]
        window.in_flight += sum(s.in_flight for s in seen if s is not None)
        window.samples += 1

    def _count_usage(
        self,
        window: Window,
        mine: Sequence[ReplicaStatus],
        usage: Mapping[str, Usage],
        asked: Requests,
        now: float,
    ) -> None:
        measured = [(r.replica_id, usage[r.replica_id]) for r in mine if r.replica_id in usage]
        if not measured:
            return
        window.cpu_percent += sum(self._cpu_percent(rid, used, asked, now) for rid, used in measured)
        window.cpu_samples += 1
        if asked.memory_bytes:
            window.memory_percent += sum(
                100.0 * used.memory_bytes / asked.memory_bytes for _, used in measured
            )
            window.memory_samples += 1
        gpus = [used.gpu_percent for _, used in measured if used.gpu_percent is not None]
        if gpus:
            window.gpu_percent += sum(gpus)
            window.gpu_samples += 1

    def _cpu_percent(self, replica_id: str, used: Usage, asked: Requests, now: float) -> float:
        """CPU since the replica's last sample, in % of what it requested (0 at its first sample)."""
        before = self._cpu.get(replica_id)
        self._cpu[replica_id] = (used.cpu_seconds, now)
        if before is None or now <= before[1]:
            return 0.0
        cores = (used.cpu_seconds - before[0]) / (now - before[1])
        return 100.0 * cores / (asked.cpu_cores or DEFAULT_CPU_REQUEST_CORES)

    def keep_only(self, keys: set[SlotKey]) -> None:
        """Forget Services that are no longer deployed."""
        self.windows = {k: v for k, v in self.windows.items() if k in keys}
        self._arrived = {k: v for k, v in self._arrived.items() if k in keys}

    def _forget_gone(self, running: Sequence[ReplicaStatus]) -> None:
        ids = {r.replica_id for r in running}
        self._cpu = {replica_id: v for replica_id, v in self._cpu.items() if replica_id in ids}
