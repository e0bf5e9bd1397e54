"""One reconciliation step as a pure function: desired Services + observed replicas → actions.

No clock is read and nothing is executed here: `now` is an argument, decisions come back as data, and
the crash-backoff bookkeeping is returned as a new value, so every rule is unit-testable.
"""

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from tiffin.backends.protocol import ReplicaPhase, ReplicaSpec, ReplicaStatus
from tiffin.core.strategy import DEFAULT_STRATEGY, Strategy
from tiffin.reconciler.replica_set import LIVE, ReplicaSet
from tiffin.reconciler.rollout import RAMP_PAUSE_S, Budget, budget
from tiffin.routing.traffic import ReplicaTraffic

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
# BestEffortControlledRollout judges a new revision's error rate once it has answered this many requests;
# it is "clearly worse" when it exceeds the previous revision's by 10 points and is at least twice it.
ERROR_RATE_MIN_REQUESTS = 20
ERROR_RATE_MARGIN = 0.10
ERROR_RATE_FACTOR = 2.0
NO_TRAFFIC: Mapping[str, ReplicaTraffic] = MappingProxyType({})

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
    strategy: Strategy = DEFAULT_STRATEGY
    ramp_pause_s: float = RAMP_PAUSE_S

    @property
    def budget(self) -> Budget:
        return budget(self.strategy, self.replicas, self.ramp_pause_s)

    @property
    def key(self) -> SlotKey:
        return (self.deployment, self.service)


@dataclass(frozen=True)
class Start:
    spec: ReplicaSpec


@dataclass(frozen=True)
class Stop:
    """Stop a replica now: SIGTERM, SIGKILL after the grace period (it serves no traffic)."""

    replica_id: str
    reason: str


@dataclass(frozen=True)
class Drain:
    """Stop a ready replica gracefully: out of the routes first, stopped once in-flight requests had
    a moment to finish."""

    replica_id: str
    reason: str


@dataclass(frozen=True)
class Forget:
    """Drop a failed replica whose processes are gone."""

    replica_id: str


@dataclass(frozen=True)
class RollBack:
    """Make `to_revision`, the last one that fully served, current again (BestEffortControlledRollout)."""

    deployment: str
    to_revision: str
    reason: str


Action = Start | Drain | Stop | Forget | RollBack
Removal = Drain | Stop


def removal(replica: ReplicaStatus, reason: str) -> Removal:
    """How a replica goes: drained when it serves traffic, stopped at once otherwise."""
    if replica.phase is ReplicaPhase.RUNNING:
        return Drain(replica.replica_id, reason)
    return Stop(replica.replica_id, reason)


@dataclass(frozen=True)
class SlotHealth:
    """Crash history of one Service slot: consecutive failures drive the backoff."""

    restarts: int = 0
    consecutive_failures: int = 0
    next_start_at: float = 0.0
    last_reason: str = ""
    paused_until: float = 0.0
    failing_revision: str = ""  # the revision the failure streak belongs to
    settled_revision: str = ""  # the last revision seen with all its replicas ready and no others


@dataclass(frozen=True)
class RestartBook:
    slots: dict[SlotKey, SlotHealth] = field(default_factory=dict)

    def health(self, key: SlotKey) -> SlotHealth:
        return self.slots.get(key, SlotHealth())

    def with_health(self, key: SlotKey, health: SlotHealth) -> "RestartBook":
        return RestartBook({**self.slots, key: health})

    @classmethod
    def remembered(cls, history: Sequence[tuple[SlotKey, int, str, str]]) -> "RestartBook":
        """A book that starts from (slot, restarts, last reason, its revision) kept from before."""
        return cls(
            {
                key: SlotHealth(restarts, last_reason=reason, failing_revision=rev)
                for key, restarts, reason, rev in history
            }
        )


def plan(
    desired: Sequence[DesiredService],
    observed: Sequence[ReplicaStatus],
    book: RestartBook,
    now: float,
    new_replica_id: Callable[[DesiredService], str],
    traffic: Mapping[str, ReplicaTraffic] = NO_TRAFFIC,
    still_running: Collection[str] = (),
) -> tuple[list[Action], RestartBook]:
    """`traffic`: what the gateway counted per replica id, for BestEffortControlledRollout's judgement;
    `still_running`: failed replicas whose processes still run (judged failed for missing their
    cold-start deadline), which are stopped rather than forgotten."""
    slots = {d.key for d in desired}
    actions: list[Action] = []
    book = _record_outcomes(observed, book, now, actions, still_running)
    actions += _stop_unwanted(observed, slots)
    replicas = ReplicaSet(observed)
    for service in desired:
        mine = replicas.of(*service.key)
        new, old = mine.of_revision(service.revision).get(*LIVE), mine.other_than(service.revision).get(*LIVE)
        book = _settle(service, new, old, book)
        rollback = _roll_back(service, observed, traffic, book.health(service.key))
        if rollback is not None:
            actions.append(rollback)
        elif old:
            rolled, book = _roll(service, new, old, book, now, new_replica_id)
            actions += rolled
        else:
            actions += _scale(service, new, book.health(service.key), now, new_replica_id)
    return actions, book


def _settle(
    service: DesiredService, new: list[ReplicaStatus], old: list[ReplicaStatus], book: RestartBook
) -> RestartBook:
    """Remember the revision once it alone serves with every replica ready: its rollout is over."""
    health = book.health(service.key)
    ready = sum(r.phase is ReplicaPhase.RUNNING for r in new)
    if old or ready < service.replicas or health.settled_revision == service.revision:
        return book
    return book.with_health(service.key, replace(health, settled_revision=service.revision))


def _roll_back(
    service: DesiredService,
    observed: Sequence[ReplicaStatus],
    traffic: Mapping[str, ReplicaTraffic],
    health: SlotHealth,
) -> RollBack | None:
    """BestEffortControlledRollout: a revision still rolling out is undone when one of its replicas
    fails or its error rate is clearly worse than the previous revision's."""
    settled = health.settled_revision
    if not service.budget.roll_back_on_failure or settled in ("", service.revision):
        return None
    failed = _failed_new(observed, service)
    if failed:
        reason = f"a replica of Service {service.service} failed ({failed[0].reason or 'exited'})"
        return RollBack(service.deployment, settled, reason)
    worse = _worse_error_rate(service, observed, traffic)
    return RollBack(service.deployment, settled, worse) if worse else None


def _worse_error_rate(
    service: DesiredService, observed: Sequence[ReplicaStatus], traffic: Mapping[str, ReplicaTraffic]
) -> str | None:
    mine = [r for r in observed if (r.deployment, r.service) == service.key and r.replica_id in traffic]
    new = sum((traffic[r.replica_id] for r in mine if r.revision == service.revision), ReplicaTraffic())
    old = sum((traffic[r.replica_id] for r in mine if r.revision != service.revision), ReplicaTraffic())
    if new.requests < ERROR_RATE_MIN_REQUESTS:
        return None
    baseline = old.error_rate if old.requests >= ERROR_RATE_MIN_REQUESTS else 0.0
    if new.error_rate < max(baseline + ERROR_RATE_MARGIN, baseline * ERROR_RATE_FACTOR):
        return None
    return (
        f"Service {service.service} answered {new.error_rate:.0%} of {new.requests} requests with errors, "
        f"against {baseline:.0%} for the previous revision"
    )


def _record_outcomes(
    observed: Sequence[ReplicaStatus],
    book: RestartBook,
    now: float,
    actions: list[Action],
    still_running: Collection[str],
) -> RestartBook:
    """Failed replicas are counted and forgotten (or stopped, if still running); a ready one clears its
    slot's failure streak."""
    for replica in observed:
        key = (replica.deployment, replica.service)
        health = book.health(key)
        if replica.phase is ReplicaPhase.FAILED:
            replica_id = replica.replica_id
            failed = Stop(replica_id, replica.reason) if replica_id in still_running else Forget(replica_id)
            actions.append(failed)
            book = book.with_health(key, _failed(health, replica, now))
        elif _ends_streak(replica, health):
            book = book.with_health(key, replace(health, consecutive_failures=0))
    return book


def _ends_streak(replica: ReplicaStatus, health: SlotHealth) -> bool:
    """A ready replica of the failing revision ends its streak; other revisions' replicas do not."""
    return (
        replica.phase is ReplicaPhase.RUNNING
        and health.consecutive_failures > 0
        and replica.revision == health.failing_revision
    )


def _failed(health: SlotHealth, replica: ReplicaStatus, now: float) -> SlotHealth:
    same = replica.revision == health.failing_revision
    failures = health.consecutive_failures + 1 if same else 1
    delay = min(BACKOFF_FIRST_S * 2 ** (failures - 1), BACKOFF_MAX_S)
    return replace(
        health,
        restarts=health.restarts + 1,
        consecutive_failures=failures,
        next_start_at=now + delay,
        last_reason=replica.reason or "exited",
        failing_revision=replica.revision,
    )


def _stop_unwanted(observed: Sequence[ReplicaStatus], slots: set[SlotKey]) -> list[Action]:
    return [
        removal(r, "no longer deployed")
        for r in observed
        if r.phase in LIVE and (r.deployment, r.service) not in slots
    ]


def _failed_new(observed: Sequence[ReplicaStatus], service: DesiredService) -> list[ReplicaStatus]:
    return ReplicaSet(observed).of(*service.key).of_revision(service.revision).get(ReplicaPhase.FAILED)


def _roll(
    service: DesiredService,
    new: list[ReplicaStatus],
    old: list[ReplicaStatus],
    book: RestartBook,
    now: float,
    new_replica_id: Callable[[DesiredService], str],
) -> tuple[list[Action], RestartBook]:
    """One step of replacing `old` replicas by ones of the current revision, within the budget."""
    budget = service.budget
    if budget.recreate:
        return [removal(r, "Recreate: old replicas go before new ones start") for r in old], book
    health = book.health(service.key)
    stops = _old_to_stop(service, new, old, health.settled_revision)
    if budget.pause_s and any(r.phase is ReplicaPhase.RUNNING for r in old if r.replica_id in _ids(stops)):
        health = replace(health, paused_until=now + budget.pause_s)
        book = book.with_health(service.key, health)
    room = service.replicas + budget.max_surge - (len(new) + len(old) - len(stops))
    count = min(service.replicas - len(new), room)
    starts = [] if now < health.paused_until else _starts(service, count, health, now, new_replica_id)
    return [*stops, *starts], book


def _old_to_stop(
    service: DesiredService, new: list[ReplicaStatus], old: list[ReplicaStatus], settled: str
) -> list[Removal]:
    """Old replicas that serve nothing go at once; ready ones only while enough replicas stay ready,
    those of a revision that never finished its rollout (say, the one rolled back from) first."""
    ready_old = sorted(
        (r for r in old if r.phase is ReplicaPhase.RUNNING), key=lambda r: r.revision == settled
    )
    new_ready = sum(r.phase is ReplicaPhase.RUNNING for r in new)
    floor = service.replicas - service.budget.max_unavailable
    removable = len(ready_old) if new_ready >= service.replicas else len(ready_old) + new_ready - floor
    stops = [removal(r, "not serving; replaced by the new revision") for r in old if r not in ready_old]
    return stops + [removal(r, "replaced by the new revision") for r in ready_old[: max(0, removable)]]


def _starts(
    service: DesiredService,
    count: int,
    health: SlotHealth,
    now: float,
    new_replica_id: Callable[[DesiredService], str],
) -> list[Action]:
    if count <= 0 or service.template is None or now < health.next_start_at:
        return []
    template = service.template
    return [Start(replace(template, replica_id=new_replica_id(service))) for _ in range(count)]


def _ids(actions: Sequence[Removal]) -> set[str]:
    return {a.replica_id for a in actions}


def _scale(
    service: DesiredService,
    live: list[ReplicaStatus],
    health: SlotHealth,
    now: float,
    new_replica_id: Callable[[DesiredService], str],
) -> list[Action]:
    missing = service.replicas - len(live)
    if missing > 0:
        return _starts(service, missing, health, now, new_replica_id)
    surplus = sorted(live, key=_stop_order)[: -missing or None] if missing < 0 else []
    return [removal(r, "scaled down") for r in surplus]


def _stop_order(replica: ReplicaStatus) -> int:
    """Stop pending replicas first, then starting ones, running ones last."""
    return LIVE.index(replica.phase)
