"""How many replicas each Service runs: the autoscaling policy, applied on its rhythm, with wake-up.

A Service starts at its `min_replicas` (after a Tiffin restart: the replicas it still has, within its
bounds). Every evaluation period the policy decides from the signals of the period; between
evaluations, a config change that moves the bounds applies at once, and so does demand for a Service at
zero: a request waiting at the gateway wakes it on the spot, not at the next evaluation. A Service whose
queue holds a request for `QUEUE_PRESSURE_S` is evaluated early too (at most that often), so a burst
need not wait out the period; the policy's per-period rate limits still apply. Every change is an
event that says from how many to how many replicas and why.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tiffin.autoscaler import ScalerSettings, ScalerState, ServicePolicy, decide, is_due
from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus, Usage
from tiffin.core.deployment_config import ServiceSettings
from tiffin.reconciler.events import Happened
from tiffin.reconciler.replica_set import ReplicaSet
from tiffin.reconciler.signals import Requests, Signals, SlotKey
from tiffin.routing.traffic import QueueStats, Traffic
from tiffin.store.events import Kind, NewEvent

QUEUE_PRESSURE_S = 1.0


@dataclass(frozen=True)
class ScaledService:
    """One Service to size: its deployment and settings."""

    deployment: str
    settings: ServiceSettings

    @property
    def key(self) -> SlotKey:
        return (self.deployment, self.settings.name)

    def policy(self) -> ServicePolicy:
        return ServicePolicy.of(self.settings)

    def requests(self) -> Requests:
        millicores = self.settings.cpu_millicores
        return Requests(millicores / 1000 if millicores else None, self.settings.memory_bytes)


@dataclass
class Scaler:
    settings: ScalerSettings = field(default_factory=ScalerSettings)
    signals: Signals = field(default_factory=Signals)
    counts: dict[SlotKey, int] = field(default_factory=dict)
    states: dict[SlotKey, ScalerState] = field(default_factory=dict)

    def step(
        self,
        services: Sequence[ScaledService],
        observed: Sequence[ReplicaStatus],
        traffic: Traffic,
        usage: Mapping[str, Usage],
        now: float,
    ) -> list[Happened]:
        """Sample, then size every Service; returns the scaling events. Read `counts` afterwards."""
        replicas = ReplicaSet(observed)
        self.signals.sample(now, replicas, traffic, usage, {s.key: s.requests() for s in services})
        happened = [event for s in services if (event := self._size(s, replicas, traffic, now)) is not None]
        self._forget_others({s.key for s in services})
        return happened

    def _size(
        self, service: ScaledService, replicas: ReplicaSet, traffic: Traffic, now: float
    ) -> Happened | None:
        key, settings = service.key, service.settings
        current = self.counts.get(key)
        if current is None:
            live = replicas.of(*key).count(ReplicaPhase.STARTING, ReplicaPhase.RUNNING)
            current = self.counts[key] = _clamp(live, settings)
        bounded = _clamp(current, settings)
        if bounded != current:
            self.counts[key] = bounded
            why = f"min_replicas {settings.min_replicas}, max_replicas {settings.max_replicas}"
            return _event(key, f"Service {key[1]}: {current} → {bounded} replicas ({why}).")
        state = self.states.get(key, ScalerState())
        queue = traffic.queues.get(key)
        if not (_woken(current, queue) or _pressed(state, queue, now) or is_due(state, now, self.settings)):
            return None
        measurement = self.signals.measure(key, current, now)
        decision, self.states[key] = decide(service.policy(), measurement, state, now, self.settings)
        self.counts[key] = decision.desired
        return _event(key, decision.describe(key[1]) + ".") if decision.changed else None

    def _forget_others(self, keys: set[SlotKey]) -> None:
        self.counts = {k: v for k, v in self.counts.items() if k in keys}
        self.states = {k: v for k, v in self.states.items() if k in keys}
        self.signals.keep_only(keys)


def _woken(current: int, queue: QueueStats | None) -> bool:
    return current == 0 and queue is not None and queue.waiting > 0


def _pressed(state: ScalerState, queue: QueueStats | None, now: float) -> bool:
    """Requests have waited `QUEUE_PRESSURE_S` and the last evaluation is that old: evaluate now."""
    if queue is None or queue.oldest_wait_s < QUEUE_PRESSURE_S or state.last_evaluated is None:
        return False
    return now - state.last_evaluated >= QUEUE_PRESSURE_S


def _clamp(count: int, settings: ServiceSettings) -> int:
    return min(max(count, settings.min_replicas), settings.max_replicas)


def _event(key: SlotKey, message: str) -> Happened:
    return Happened(key[0], NewEvent(Kind.SCALING, message, key[1]))


def scale_report(
    services: Sequence[ScaledService],
    counts: Mapping[SlotKey, int],
    observed: Sequence[ReplicaStatus],
    traffic: Traffic,
) -> dict[str, dict[str, dict[str, int]]]:
    """Per deployment and Service: the replicas wanted, those ready, and the requests waiting."""
    report: dict[str, dict[str, dict[str, int]]] = {}
    replicas = ReplicaSet(observed)
    for service in services:
        key, queue = service.key, traffic.queues.get(service.key)
        report.setdefault(key[0], {})[key[1]] = {
            "replicas": counts.get(key, service.settings.min_replicas),
            "ready": replicas.of(*key).count(ReplicaPhase.RUNNING),
            "waiting": queue.waiting if queue else 0,
            "min_replicas": service.settings.min_replicas,
            "max_replicas": service.settings.max_replicas,
        }
    return report
