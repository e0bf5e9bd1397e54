"""One reconciliation step as a pure function: desired Services + observed replicas → actions.

No clock is read and nothing is executed here: `now` is an argument, decisions come back as data, and
the crash-backoff bookkeeping is returned as a new value, so every rule is unit-testable.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tiffin.backends.protocol import ReplicaPhase, ReplicaSpec, ReplicaStatus

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
LIVE = (ReplicaPhase.PENDING, ReplicaPhase.STARTING, ReplicaPhase.RUNNING)

SlotKey = tuple[str, str]  # (deployment, service)


@dataclass(frozen=True)
class DesiredService:
    """`replicas` replicas of one Service of the current revision, each started from `template`.

    Without a template (the revision's environment is still being built) replicas already running for
    the revision are kept, but none can be started.
    """

    deployment: str
    service: str
    revision: str
    replicas: int
    template: ReplicaSpec | None

    @property
    def key(self) -> SlotKey:
        return (self.deployment, self.service)


@dataclass(frozen=True)
class Start:
    spec: ReplicaSpec


@dataclass(frozen=True)
class Stop:
    replica_id: str
    reason: str


@dataclass(frozen=True)
class Forget:
    replica_id: str


Action = Start | Stop | Forget


@dataclass(frozen=True)
class SlotHealth:
    """Crash history of one Service slot: consecutive failures drive the backoff."""

    restarts: int = 0
    consecutive_failures: int = 0
    next_start_at: float = 0.0
    last_reason: str = ""


@dataclass(frozen=True)
class RestartBook:
    slots: dict[SlotKey, SlotHealth] = field(default_factory=dict)

    def health(self, key: SlotKey) -> SlotHealth:
        return self.slots.get(key, SlotHealth())

    def with_health(self, key: SlotKey, health: SlotHealth) -> "RestartBook":
        return RestartBook({**self.slots, key: health})


def plan(
    desired: Sequence[DesiredService],
    observed: Sequence[ReplicaStatus],
    book: RestartBook,
    now: float,
    new_replica_id: Callable[[DesiredService], str],
) -> tuple[list[Action], RestartBook]:
    wanted = {(d.deployment, d.service, d.revision): d for d in desired}
    actions: list[Action] = []
    book = _record_outcomes(observed, book, now, actions)
    actions += _stop_unwanted(observed, wanted)
    for service in desired:
        actions += _scale(service, _live(observed, service), book.health(service.key), now, new_replica_id)
    return actions, book


def _record_outcomes(
    observed: Sequence[ReplicaStatus], book: RestartBook, now: float, actions: list[Action]
) -> RestartBook:
    """Failed replicas are forgotten and counted; a running one clears its slot's failure streak."""
    for replica in observed:
        key = (replica.deployment, replica.service)
        health = book.health(key)
        if replica.phase is ReplicaPhase.FAILED:
            actions.append(Forget(replica.replica_id))
            book = book.with_health(key, _failed(health, replica.reason, now))
        elif replica.phase is ReplicaPhase.RUNNING and health.consecutive_failures:
            book = book.with_health(key, replace(health, consecutive_failures=0))
    return book


def _failed(health: SlotHealth, reason: str, now: float) -> SlotHealth:
    failures = health.consecutive_failures + 1
    delay = min(BACKOFF_FIRST_S * 2 ** (failures - 1), BACKOFF_MAX_S)
    return SlotHealth(health.restarts + 1, failures, now + delay, reason or "exited")


def _stop_unwanted(
    observed: Sequence[ReplicaStatus], wanted: dict[tuple[str, str, str], DesiredService]
) -> list[Action]:
    return [
        Stop(r.replica_id, "not part of the current revision")
        for r in observed
        if r.phase in LIVE and (r.deployment, r.service, r.revision) not in wanted
    ]


def _live(observed: Sequence[ReplicaStatus], service: DesiredService) -> list[ReplicaStatus]:
    return [
        r
        for r in observed
        if r.phase in LIVE
        and (r.deployment, r.service, r.revision) == (service.deployment, service.service, service.revision)
    ]


def _scale(
    service: DesiredService,
    live: list[ReplicaStatus],
    health: SlotHealth,
    now: float,
    new_replica_id: Callable[[DesiredService], str],
) -> list[Action]:
    missing = service.replicas - len(live)
    if missing > 0:
        if service.template is None or now < health.next_start_at:
            return []
        template = service.template
        return [Start(replace(template, replica_id=new_replica_id(service))) for _ in range(missing)]
    surplus = sorted(live, key=_stop_order)[: -missing or None] if missing < 0 else []
    return [Stop(r.replica_id, "scaled down") for r in surplus]


def _stop_order(replica: ReplicaStatus) -> int:
    """Stop pending replicas first, then starting ones, running ones last."""
    return LIVE.index(replica.phase)
