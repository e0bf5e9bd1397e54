"""The reconcile loop: observe, decide, act, persist, publish — one step every interval.

Each step reads desired state from the store and observed state from the backend, plans with the pure
`plan()`, has the backend execute the actions, writes statuses and replica records back, and hands the
routing snapshot to the gateway.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tiffin.artifacts.storage import ArtifactStore
from tiffin.autoscaler import DEFAULT_SETTINGS, ScalerSettings
from tiffin.backends.protocol import Backend, BentoRef, ReplicaStatus
from tiffin.builder import Builder
from tiffin.core.clock import Clock
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.core.instance_types import InstanceType
from tiffin.core.settings import DEFAULT_QUEUE_CAPACITY
from tiffin.reconciler.admission import admission, cold_start_timeout
from tiffin.reconciler.builds import BuildTracker
from tiffin.reconciler.desired import DesiredReader, Wanted
from tiffin.reconciler.draining import Drains
from tiffin.reconciler.events import Happened, View, action_events, changes, view_of
from tiffin.reconciler.persist import Observed, Recorder, Replicas, remembered_restarts
from tiffin.reconciler.plan import Action, DesiredService, Drain, Forget, RollBack, Start, Stop, plan
from tiffin.reconciler.readiness import ReadinessDeadlines
from tiffin.reconciler.replica_set import ReplicaSet
from tiffin.reconciler.routing import RouteInput, newer, snapshot
from tiffin.reconciler.scaling import ScaledService, Scaler, scale_report
from tiffin.reconciler.specs import RuntimeContext, replica_template
from tiffin.reconciler.status import Status, build_status, runtime_status, terminated_status
from tiffin.routing.snapshot import RoutingSnapshot
from tiffin.routing.traffic import ReplicaTraffic, Traffic
from tiffin.store.db import Database
from tiffin.store.deployments import PortPool, RollbackTarget, all_deployments, roll_back
from tiffin.store.models import Deployment
from tiffin.store.replica_tokens import retire_replica_tokens
from tiffin.store.secret_box import SecretBox
from tiffin.store.secrets import SecretStore

log = logging.getLogger("tiffin.reconciler")
NO_TRAFFIC = Traffic({}, {})


class GatewayPort(Protocol):
    """What the loop needs of the gateways: publish routes, read what they counted (one gateway in this
    process, or every gateway through the store)."""

    async def apply(self, snapshot: RoutingSnapshot) -> None: ...

    async def counts(self) -> Traffic: ...


@dataclass(frozen=True)
class ReconcilerDeps:
    db: Database
    backend: Backend
    builder: Builder
    artifacts: ArtifactStore
    secrets: SecretStore
    box: SecretBox
    catalog: list[InstanceType]
    api_endpoint: str
    clock: Clock
    ports: PortPool
    queue_capacity: int = DEFAULT_QUEUE_CAPACITY
    scaler: ScalerSettings = DEFAULT_SETTINGS
    gateway_host: str = "127.0.0.1"  # where replicas reach the gateways' internal routes
    domain: str = ""  # TIFFIN_DOMAIN: deployments are also served at <name>.<domain>


@dataclass(frozen=True)
class _Decided:
    desired: list[DesiredService]
    routes: list[RouteInput]
    statuses: dict[str, Status]
    ready_timeouts: dict[tuple[str, str, str], float]


class Reconciler:
    def __init__(self, deps: ReconcilerDeps, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._deps = deps
        self._builds = BuildTracker(deps.builder)
        self._book = remembered_restarts(deps.db)
        self._monotonic = monotonic
        self._recorder = Recorder(deps.db, deps.clock)
        self._drains = Drains()
        self._deadlines = ReadinessDeadlines()
        self._view: View | None = None
        self._scaler = Scaler(deps.scaler)
        self._desired = DesiredReader(deps.artifacts, deps.secrets, deps.catalog)

    def step(self, traffic: Traffic | None = None) -> RoutingSnapshot:
        """One pass; `traffic` is what the gateway counted per replica URL (None: nothing known)."""
        now = self._monotonic()
        actual = self._deps.backend.observe()
        observed = self._drains.as_seen(actual)
        rows, wanted = self._read(actual)
        traffic, sized = traffic or NO_TRAFFIC, _scaled(wanted)
        scaled = self._scaler.step(sized, observed, traffic, self._deps.backend.usage(), now)
        decided = self._decide(wanted, observed)
        observed = self._deadlines.as_seen(observed, decided.ready_timeouts, now)
        by_replica = _by_replica(observed, traffic.replicas)
        overdue = self._deadlines.overdue_ids()
        actions, self._book = plan(
            decided.desired, observed, self._book, now, _replica_id, by_replica, still_running=overdue
        )
        happened = scaled + self._happened(decided.desired, observed, actions)
        self._act(actions, now)
        scales = scale_report(sized, self._scaler.counts, observed, traffic)
        self._recorder.persist(
            rows, Observed(decided.statuses, scales), Replicas(observed, self._book), happened
        )
        return snapshot(decided.routes, observed, self._deps.domain)

    def _read(self, actual: Sequence[ReplicaStatus]) -> tuple[list[Deployment], list[Wanted]]:
        """Desired state from the store. On the way, the replica tokens of revisions that are no longer
        current and have no replica left (none observed, none about to be started) are revoked."""
        deps = self._deps
        with deps.db.session() as session:
            rows = all_deployments(session)
            wanted = self._desired.read(session, rows)
            in_use = {(r.deployment, r.revision) for r in actual} | {(w.name, w.revision) for w in wanted}
            retire_replica_tokens(session, in_use, deps.clock.now())
        return rows, wanted

    def _happened(
        self, desired: Sequence[DesiredService], observed: Sequence[ReplicaStatus], actions: Sequence[Action]
    ) -> list[Happened]:
        view = view_of(desired, observed, self._view)
        strategies = {d.key: d.strategy for d in desired}
        happened = changes(self._view, view, strategies) + action_events(actions, view.replicas)
        self._view = view
        return happened

    def _decide(self, wanted: Sequence[Wanted], observed: Sequence[ReplicaStatus]) -> _Decided:
        self._builds.keep_only({w.revision for w in wanted if w.active})
        replicas = ReplicaSet(observed)
        desired: list[DesiredService] = []
        routes: list[RouteInput] = []
        statuses: dict[str, Status] = {}
        timeouts: dict[tuple[str, str, str], float] = {}
        for want in wanted:
            for settings in want.settings:
                timeouts[(want.name, settings.name, want.revision)] = cold_start_timeout(settings)
            services, status = self._desired_of(want, replicas.of(want.name).get())
            desired += services
            statuses[want.name] = status
            routes.append(_route_input(want, status, self._deps.queue_capacity))
        return _Decided(desired, routes, statuses, timeouts)

    def _desired_of(
        self, want: Wanted, observed: Sequence[ReplicaStatus]
    ) -> tuple[list[DesiredService], Status]:
        if not want.active or want.build_request is None:
            return [], terminated_status(observed)
        build, built = self._builds.state(want.name, want.revision, want.build_request)
        waiting = build_status(build)
        counts = {s.name: self._scaler.counts.get((want.name, s.name), s.min_replicas) for s in want.settings}
        if waiting is not None or built is None:
            kept = [
                DesiredService(want.name, s.name, want.revision, counts[s.name], None, s.strategy)
                for s in want.settings
            ]
            return kept, waiting or Status(DeploymentStatus.IMAGE_BUILDING)
        runtime = RuntimeContext(
            deployment=want.name,
            revision=want.revision,
            bento=BentoRef(want.bento_tag, tuple(want.build_request.model_archives)),
            manifest=want.manifest,
            internal_ports=want.internal_ports,
            api_endpoint=self._deps.api_endpoint,
            replica_token=self._deps.box.open(want.replica_token_ciphertext)
            if want.replica_token_ciphertext
            else "",
            secrets=want.secrets,
            gateway_host=self._deps.gateway_host,
        )
        services = [
            DesiredService(
                want.name, s.name, want.revision, counts[s.name], replica_template(runtime, s), s.strategy
            )
            for s in want.settings
        ]
        return services, runtime_status(services, observed, self._book)

    def _act(self, actions: Sequence[Action], now: float) -> None:
        for action in sorted(actions, key=lambda a: isinstance(a, Start)):
            try:
                self._execute(action, now)
            except Exception:
                log.exception("could not execute %s", action)
        for replica_id in self._drains.due(now):
            log.debug("stopping %s after draining", replica_id)
            self._deps.backend.stop(replica_id)

    def _execute(self, action: Action, now: float) -> None:
        backend = self._deps.backend
        if isinstance(action, Forget):
            backend.forget(action.replica_id)
        elif isinstance(action, Stop):
            log.debug("stopping %s: %s", action.replica_id, action.reason)
            backend.stop(action.replica_id)
        elif isinstance(action, Drain):
            log.debug("draining %s: %s", action.replica_id, action.reason)
            self._drains.begin(action.replica_id, now)
        elif isinstance(action, RollBack):
            log.debug("rolling %s back: %s", action.deployment, action.reason)
            with self._deps.db.session() as session:
                deps = self._deps
                to = RollbackTarget(action.deployment, action.to_revision, action.reason)
                roll_back(session, to, deps.ports, deps.box, deps.clock.now())
        else:
            log.debug("starting %s", action.spec.replica_id)
            backend.start(action.spec)

    async def run(
        self, gateway: GatewayPort, interval_s: float, stop: asyncio.Event, nudge: asyncio.Event
    ) -> None:
        """Step every `interval_s`, or at once when `nudge` is set (a request waits for a Service with
        no replica, a replica got ready or failed), until `stop` is set; a failing step is logged and
        retried, never fatal. Routes go to the gateway only when they changed, with a new version."""
        published: RoutingSnapshot | None = None
        loop = asyncio.get_running_loop()

        def build_done() -> None:  # on a build's thread
            loop.call_soon_threadsafe(nudge.set)

        self._builds.on_done = build_done
        while not stop.is_set():
            nudge.clear()
            try:
                traffic = await gateway.counts()
                changed = newer(published, await asyncio.to_thread(self.step, traffic))
                if changed is not None:
                    await gateway.apply(changed)
                    published = changed
            except Exception:
                log.exception("a reconcile step failed; retrying")
            await _first_of(stop, nudge, interval_s)

    def close(self) -> None:
        self._builds.close()


async def _first_of(stop: asyncio.Event, nudge: asyncio.Event, timeout_s: float) -> None:
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(nudge.wait())}
    _, pending = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for wait in pending:
        wait.cancel()


def _scaled(wanted: Sequence[Wanted]) -> list[ScaledService]:
    """The Services to size: those of active deployments (a terminated one runs nothing)."""
    return [
        ScaledService(want.name, settings)
        for want in wanted
        if want.active and want.build_request is not None
        for settings in want.settings
    ]


def _by_replica(
    observed: Sequence[ReplicaStatus], traffic: Mapping[str, ReplicaTraffic]
) -> dict[str, ReplicaTraffic]:
    return {r.replica_id: traffic[r.url] for r in observed if r.url is not None and r.url in traffic}


def _replica_id(service: DesiredService) -> str:
    return f"{service.deployment}-{service.service.lower()}-{service.revision[:6]}-{secrets.token_hex(2)}"


def _route_input(want: Wanted, status: Status, queue_capacity: int) -> RouteInput:
    return RouteInput(
        name=want.name,
        port=want.port,
        entry_service=want.entry_service if want.manifest else "",
        internal_ports=want.internal_ports,
        protected=want.protected,
        status=status.status,
        message=status.message,
        admissions={s.name: admission(s, queue_capacity) for s in want.settings},
    )
