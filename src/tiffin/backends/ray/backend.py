"""`RayBackend`: replicas as detached Ray actors, one per replica, on whichever node has room.

The controller keeps only handles: each replica is a named actor (its name is the replica id, in the
`tiffin` namespace) that Ray places on a node with the replica's resources (`resources`), and that
runs the replica there (`actor`). Actors are detached with `max_restarts=0`: they outlive a
controller (the next one adopts them by name) and are never restarted by Ray, since the reconciler
replaces failed replicas itself. Each new actor prefers (softly) the node holding the fewest replicas
of its Service, so one node's loss takes as few of a Service's replicas as possible. A daemon thread
long-polls every actor (`status(version, wait_s)`, batched with `ray.wait`) and caches what they say,
so every public method returns at once; an actor that Ray has not placed is PENDING with a sentence
saying what no node offers, and one that died (its node gone, killed) is FAILED with a reason naming
its node. The output of stopped replicas is
kept in memory a while (`ended`); it does not survive a controller restart.
"""

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

try:
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError, RayError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError(
        "The Ray backend needs Ray: install Tiffin with its `ray` extra (pip install 'tiffin[ray]')."
    ) from missing

from tiffin.backends.ended import EndedReplica
from tiffin.backends.protocol import Backend, ReplicaPhase, ReplicaSpec, ReplicaStatus, Usage
from tiffin.backends.ray.actor import ActorStatus, NodeMaterializer, NodeSettings, ReplicaActor
from tiffin.backends.ray.lease import LeaseTerms, terms_for
from tiffin.backends.ray.resources import (
    Placed,
    actor_options,
    nodes_from_ray,
    required,
    say,
    spread_node,
    why_pending,
)

log = logging.getLogger("tiffin.backends")

NAMESPACE = "tiffin"
LONG_POLL_S = 2.0  # how long an actor holds a status call when nothing changes
TICK_S = 0.2  # the longest the watcher waits for answers before looking again
PENDING_CHECK_S = 2.0  # how often the reasons of unplaced actors are worked out again
PENDING_AFTER_S = 1.0  # an actor silent this long after its creation is taken as not placed
CALL_TIMEOUT_S = 5.0
ADOPT_TIMEOUT_S = 5.0  # how long adoption waits for an actor that Ray placed to answer
ADOPT_QUICK_S = 1.0  # placed actors answer within this; then silent ones are looked up
STATE_API_RETRY_S = 60.0
ENDED_PER_SERVICE = 10
ENDED_LOG_LINES = 1000
ACTOR_CONCURRENCY = 8  # long polls, log reads and the stop call at once
_STOP_MARGIN_S = 10.0
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")


@dataclass
class _Actor:
    """The controller's view of one replica's actor; mutated only under the backend's lock."""

    handle: Any
    status: ReplicaStatus
    needs: Mapping[str, float]
    created: float
    version: int | None = None  # the last version it reported; None until it first answers
    usage: Usage | None = None
    node_ip: str = ""
    node_id: str = ""  # where it runs, once it said so
    preferred_node: str | None = None  # where it was asked to run
    polling: Any = None  # the status call in flight
    retiring: Any = None  # the stop call in flight
    retire_by: float = 0.0
    hidden: bool = False  # being stopped or forgotten without a STOPPING phase to show
    dead: bool = False
    fenced_by: float | None = None  # its node died: failed at this time, when it has fenced itself
    death: str = ""  # why it died, once it did


@dataclass(frozen=True)
class _Ended:
    replica: EndedReplica
    output: str


class RayBackend:
    """Runs replicas as Ray actors; see the module docstring.

    `address` is the cluster head's (`head:6379`; None: `RAY_ADDRESS`, else a local Ray), ignored when
    this process is already connected (a Ray Client `ray://` address did not connect in our tests).
    `materializer` makes bentos runnable on a node (given the node's Tiffin directory); `settings` say
    how actors run replicas."""

    def __init__(
        self,
        address: str | None,
        materializer: NodeMaterializer,
        settings: NodeSettings | None = None,
        *,
        namespace: str = NAMESPACE,
        long_poll_s: float = LONG_POLL_S,
        adopt_timeout_s: float = ADOPT_TIMEOUT_S,
        clock_time: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING)
        self._materializer = materializer
        self._settings = replace(settings or NodeSettings(), lease=_cluster_lease())
        self._namespace = namespace
        self._long_poll_s = long_poll_s
        self._now = clock_time
        self._actor_class = ray.remote(ReplicaActor)
        self._actors: dict[str, _Actor] = {}
        self._ended: list[_Ended] = []
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._subscribers: list[Callable[[], None]] = []
        self._next_pending_check = 0.0
        self._state_api_from = 0.0  # when the state API may be tried again
        self._adopt_all(adopt_timeout_s)
        self._watcher = threading.Thread(target=self._watch, name="tiffin-ray-backend", daemon=True)
        self._watcher.start()

    # --- the Backend protocol -------------------------------------------------------------------

    def start(self, spec: ReplicaSpec) -> None:
        if not _SAFE_ID.fullmatch(spec.replica_id):
            raise ValueError(f"replica id {spec.replica_id!r} is not a safe actor name")
        with self._lock:
            if spec.replica_id in self._actors:
                return
        needs = required(spec.resources)
        status = ReplicaStatus(
            spec.replica_id,
            spec.deployment,
            spec.service,
            spec.revision,
            ReplicaPhase.PENDING,
            reason="waiting for Ray to place it" + (f" on a node with {say(needs)}" if needs else ""),
        )
        preferred = self._preferred_node(spec, needs)
        try:
            handle = self._create(spec, preferred)
        except Exception as error:  # Ray refuses bad options with several exception types
            handle = None
            status = replace(status, phase=ReplicaPhase.FAILED, reason=f"Ray refused its actor: {error}")
        actor = _Actor(handle, status, needs, self._now(), preferred_node=preferred, dead=handle is None)
        with self._lock:
            self._actors.setdefault(spec.replica_id, actor)

    def stop(self, replica_id: str) -> None:
        with self._lock:
            actor = self._actors.get(replica_id)
            if actor is None or actor.status.phase is ReplicaPhase.STOPPING or actor.hidden:
                return
            if actor.status.phase in (ReplicaPhase.STARTING, ReplicaPhase.RUNNING):
                actor.status = replace(actor.status, phase=ReplicaPhase.STOPPING, reason="stop requested")
            else:
                actor.hidden = True  # pending or failed: gone at once, as far as the reconciler sees
            self._retire(actor)

    def forget(self, replica_id: str) -> None:
        with self._lock:
            actor = self._actors.get(replica_id)
            if actor is None or actor.hidden:
                return
            if actor.status.phase is not ReplicaPhase.FAILED:
                raise ValueError(
                    f"replica {replica_id} is {actor.status.phase}; stop it instead of forgetting it"
                )
            actor.hidden = True
            self._retire(actor)

    def observe(self) -> list[ReplicaStatus]:
        with self._lock:
            return [actor.status for actor in self._actors.values() if not actor.hidden]

    def usage(self) -> dict[str, Usage]:
        with self._lock:
            return {
                replica_id: actor.usage
                for replica_id, actor in self._actors.items()
                if actor.usage is not None and actor.status.phase is ReplicaPhase.RUNNING
            }

    def read_log(self, replica_id: str, tail: int) -> str:
        with self._lock:
            actor = self._actors.get(replica_id)
            handle = actor.handle if actor is not None and not actor.dead else None
        if handle is not None:
            try:
                output: str = ray.get(handle.read_log.remote(tail), timeout=CALL_TIMEOUT_S)
                return output
            except RayError:
                pass
        with self._lock:
            kept = next((e.output for e in reversed(self._ended) if e.replica.replica_id == replica_id), "")
        return _last_lines(kept, tail)

    def ended(self, deployment: str) -> list[EndedReplica]:
        with self._lock:
            return [e.replica for e in self._ended if e.replica.deployment == deployment]

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def close(self, stop_replicas: bool) -> None:
        if stop_replicas:
            with self._lock:
                for replica_id in list(self._actors):
                    self.stop(replica_id)
            deadline = self._now() + self._settings.stop_grace_s + 2 * _STOP_MARGIN_S
            while self._actors and self._now() < deadline and self._watcher.is_alive():
                time.sleep(TICK_S / 2)
            if self._actors:
                log.error("some Ray replicas were still stopping after close: %s", sorted(self._actors))
        self._closing.set()
        if self._watcher.is_alive() and self._watcher is not threading.current_thread():
            self._watcher.join()
        if self._owns_connection:
            ray.shutdown()

    # --- actors ---------------------------------------------------------------------------------

    def _preferred_node(self, spec: ReplicaSpec, needs: Mapping[str, float]) -> str | None:
        """The node that spreads the Service's replicas best (`spread_node`)."""
        with self._lock:
            placed = [
                Placed(node, (a.status.deployment, a.status.service) == (spec.deployment, spec.service))
                for a in self._actors.values()
                if not a.dead and not a.hidden and (node := a.node_id or a.preferred_node)
            ]
        return spread_node(needs, nodes_from_ray(_nodes()), placed)

    def _create(self, spec: ReplicaSpec, preferred_node: str | None) -> Any:
        options = actor_options(spec.resources)
        if preferred_node is not None:  # soft: Ray places it elsewhere when that node has no room
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(preferred_node, soft=True)
        try:
            return self._actor_class.options(
                name=spec.replica_id,
                namespace=self._namespace,
                lifetime="detached",
                max_restarts=0,
                max_concurrency=ACTOR_CONCURRENCY,
                **options,
            ).remote(spec, self._materializer, self._settings)
        except ValueError:
            # The name is taken: an actor of this replica that this backend has not adopted (yet).
            return ray.get_actor(spec.replica_id, namespace=self._namespace)

    def _retire(self, actor: _Actor) -> None:
        """Under the lock: ask the actor to stop its replica (then it is killed), or just kill it."""
        if actor.retiring is not None:
            return
        actor.polling = None
        actor.retire_by = self._now() + self._settings.stop_grace_s + _STOP_MARGIN_S
        if actor.dead or actor.version is None:  # dead, or never placed: nothing runs
            self._remove(actor, "")
            return
        actor.retiring = actor.handle.stop.remote(ENDED_LOG_LINES)

    def _remove(self, actor: _Actor, output: str) -> None:
        """Under the lock: kill the actor (the fence takes whatever it ran) and forget it."""
        if actor.handle is not None and not actor.dead:
            try:
                ray.kill(actor.handle, no_restart=True)
            except (RayError, ValueError) as error:
                log.debug("could not kill the actor of %s: %s", actor.status.replica_id, error)
        self._actors.pop(actor.status.replica_id, None)
        if actor.version is not None:
            self._keep(actor.status, output)

    def _keep(self, status: ReplicaStatus, output: str) -> None:
        reason = status.reason if status.phase is ReplicaPhase.FAILED else "stopped"
        ended = EndedReplica(
            status.replica_id, status.deployment, status.service, status.revision, reason, time.time()
        )
        self._ended.append(_Ended(ended, output))
        same = [
            e
            for e in self._ended
            if (e.replica.deployment, e.replica.service) == (status.deployment, status.service)
        ]
        for old in same[:-ENDED_PER_SERVICE]:
            self._ended.remove(old)

    # --- adoption -------------------------------------------------------------------------------

    def _adopt_all(self, timeout_s: float) -> None:
        """Take over the actors of this namespace that a previous controller left."""
        handles = self._named_actors()
        if not handles:
            return
        calls = {handle.status.remote(None, 0.0): (name, handle) for name, handle in handles.items()}
        deadline = self._now() + timeout_s
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=min(ADOPT_QUICK_S, timeout_s))
        self._adopt_answers(calls, ready)
        if calls:  # actors Ray never placed answer nothing: no need to wait for them
            states = self._actor_states()
            for ref, (name, handle) in list(calls.items()):
                if states.get(name) == "PENDING_CREATION":
                    del calls[ref]
                    self._unadopted(name, handle, "Ray never placed it")
        if calls:
            remaining = max(0.0, deadline - self._now())
            ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=remaining)
            self._adopt_answers(calls, ready)
        for name, handle in calls.values():
            self._unadopted(name, handle, f"it did not answer within {timeout_s:g} s")

    def _named_actors(self) -> dict[str, Any]:
        """Handles of the live named actors of this namespace, by name."""
        handles = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry.get("name", "")
            if entry.get("namespace") == self._namespace and _SAFE_ID.fullmatch(name):
                with contextlib.suppress(ValueError):  # it died meanwhile
                    handles[name] = ray.get_actor(name, namespace=self._namespace)
        return handles

    def _adopt_answers(self, calls: dict[Any, tuple[str, Any]], ready: list[Any]) -> None:
        for ref in ready:
            name, handle = calls.pop(ref)
            answer = _result(ref)
            if isinstance(answer, ActorStatus):
                actor = _Actor(handle, answer.status, {}, self._now())
                self._heard(actor, answer)
                self._actors[name] = actor
                log.debug("adopted the Ray actor of replica %s (node %s)", name, answer.node_ip)

    @staticmethod
    def _unadopted(name: str, handle: Any, why: str) -> None:
        """Kill an actor a previous controller left that cannot be adopted; the reconciler starts its
        replica again if it is still wanted."""
        log.info("Removing the Ray actor of replica %s: %s.", name, why)
        with contextlib.suppress(RayError, ValueError):
            ray.kill(handle, no_restart=True)

    # --- watching -------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._closing.is_set():
            try:
                self._tick()
            except Exception:  # the watcher must survive anything one actor does
                log.exception("Ray backend watcher tick failed")
                self._closing.wait(TICK_S)

    def _tick(self) -> None:
        with self._lock:
            before = self._phases()
            calls = self._calls()
        answers = self._answers(calls)
        reasons = self._pending_reasons()
        with self._lock:
            for ref, answer in answers:
                self._apply(calls[ref], ref, answer)
            self._expire_retirements()
            self._expire_fence_holds()
            for replica_id, reason in reasons.items():
                self._explain(replica_id, reason)
            changed = self._phases() != before
        if changed:
            for callback in self._subscribers:
                callback()

    def _phases(self) -> dict[str, ReplicaPhase]:
        return {k: a.status.phase for k, a in self._actors.items() if not a.hidden}

    def _calls(self) -> dict[Any, _Actor]:
        """Under the lock: a status call for every actor without one, and every call in flight."""
        calls: dict[Any, _Actor] = {}
        for actor in self._actors.values():
            if actor.retiring is not None:
                calls[actor.retiring] = actor
                continue
            if actor.dead:
                continue
            if actor.polling is None:
                wait_s = self._long_poll_s if actor.version is not None else 0.0
                actor.polling = actor.handle.status.remote(actor.version, wait_s)
            calls[actor.polling] = actor
        return calls

    def _answers(self, calls: Mapping[Any, _Actor]) -> list[tuple[Any, object]]:
        if not calls:
            self._closing.wait(TICK_S)
            return []
        refs = list(calls)
        ready, _ = ray.wait(refs, num_returns=1, timeout=TICK_S)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return [(ref, _result(ref)) for ref in ready]

    def _apply(self, actor: _Actor, ref: Any, answer: object) -> None:
        """Under the lock: what one call returned."""
        if self._actors.get(actor.status.replica_id) is not actor:
            return
        if ref is actor.retiring:
            self._remove(actor, answer if isinstance(answer, str) else "")
            return
        if ref is not actor.polling:
            return
        actor.polling = None
        if isinstance(answer, ActorStatus):
            self._heard(actor, answer)
        elif isinstance(answer, RayActorError) and not isinstance(answer, ActorUnavailableError):
            self._died(actor, answer)
        elif isinstance(answer, Exception):
            log.debug("status call to %s failed: %s", actor.status.replica_id, answer)

    def _heard(self, actor: _Actor, answer: ActorStatus) -> None:
        actor.version, actor.usage = answer.version, answer.usage
        actor.node_ip, actor.node_id = answer.node_ip, answer.node_id
        if actor.status.phase is not ReplicaPhase.STOPPING:
            actor.status = answer.status

    def _died(self, actor: _Actor, error: RayActorError) -> None:
        actor.dead, actor.usage = True, None
        if actor.status.phase is ReplicaPhase.STOPPING:
            self._remove(actor, "")
            return
        reason, node_died = self._death_reason(actor, error)
        if node_died and actor.status.phase is not ReplicaPhase.FAILED:
            # Its node may be cut off rather than gone: the replica is failed (replaced) only once it
            # has certainly fenced itself (`lease`); until then it is pending, and never routed to.
            actor.fenced_by = self._now() + self._settings.lease.hold_s
            waiting = f"{reason}; replaced once it has fenced itself"
            actor.status = replace(actor.status, phase=ReplicaPhase.PENDING, url=None, reason=waiting)
            actor.death = reason
            return
        actor.status = replace(actor.status, phase=ReplicaPhase.FAILED, url=None, reason=reason)
        log.debug("replica %s failed: %s", actor.status.replica_id, reason)

    def _death_reason(self, actor: _Actor, error: RayActorError) -> tuple[str, bool]:
        """Why the actor died, and whether its node did."""
        if not actor.node_id:
            return f"its Ray actor died before it was placed: {_first_line(error)}", False
        where = f"Ray node {actor.node_ip} ({actor.node_id[:12]})"
        node = next((n for n in _nodes() if n.get("NodeID") == actor.node_id), None)
        if node is not None and not node.get("Alive"):
            message = str(node.get("DeathReasonMessage") or "").strip()
            return f"its {where} died" + (f": {message}" if message else ""), True
        return f"its Ray actor on {where} died: {_first_line(error)}", False

    def _expire_fence_holds(self) -> None:
        """Under the lock: a dead node's replicas, fenced by now, are failed."""
        now = self._now()
        for actor in self._actors.values():
            if actor.fenced_by is not None and now >= actor.fenced_by:
                actor.fenced_by = None
                reason = actor.death or actor.status.reason
                actor.status = replace(actor.status, phase=ReplicaPhase.FAILED, reason=reason)
                log.debug("replica %s failed: %s", actor.status.replica_id, reason)

    def _expire_retirements(self) -> None:
        now = self._now()
        for actor in list(self._actors.values()):
            if actor.retiring is not None and now >= actor.retire_by:
                log.warning(
                    "the actor of replica %s did not stop in time: killing it", actor.status.replica_id
                )
                self._remove(actor, "")

    # --- why an actor is not placed -------------------------------------------------------------

    def _pending_reasons(self) -> dict[str, str]:
        """For actors silent since their creation (not placed), a sentence saying why; at most every
        `PENDING_CHECK_S`."""
        now = self._now()
        if now < self._next_pending_check:
            return {}
        self._next_pending_check = now + PENDING_CHECK_S
        with self._lock:
            silent = {
                k: a.needs
                for k, a in self._actors.items()
                if a.version is None and not a.dead and not a.hidden and now - a.created >= PENDING_AFTER_S
            }
        if not silent:
            return {}
        nodes = nodes_from_ray(_nodes())
        states = self._actor_states()
        reasons = {}
        for replica_id, needs in silent.items():
            state = states.get(replica_id, "PENDING_CREATION")
            if state == "PENDING_CREATION":
                reasons[replica_id] = why_pending(needs, nodes)
            elif state == "ALIVE":
                reasons[replica_id] = "placed on a Ray node; its actor is starting"
            else:
                reasons[replica_id] = f"its Ray actor is {state.lower().replace('_', ' ')}"
        return reasons

    def _actor_states(self) -> dict[str, str]:
        """The state Ray's state API gives each live actor of the namespace, by name; empty where the
        API is not available (no dashboard), then tried again after a while."""
        if self._now() < self._state_api_from:
            return {}
        try:
            from ray.util.state import list_actors  # noqa: PLC0415 - needs ray[default]

            found = list_actors(
                filters=[("ray_namespace", "=", self._namespace)],
                limit=10_000,
                timeout=2,
                raise_on_missing_output=False,
            )
        except Exception as error:  # no dashboard, an old Ray, a client connection...
            log.debug("Ray's state API is not available: %s", error)
            self._state_api_from = self._now() + STATE_API_RETRY_S
            return {}
        return {actor.name: actor.state for actor in found if actor.name and actor.state != "DEAD"}

    def _explain(self, replica_id: str, reason: str) -> None:
        actor = self._actors.get(replica_id)
        if actor is not None and actor.version is None and actor.status.phase is ReplicaPhase.PENDING:
            actor.status = replace(actor.status, reason=reason)


def _cluster_lease() -> LeaseTerms:
    """The lease for the cluster this process is connected to (its health-check settings)."""
    try:
        return terms_for(ray._config.health_check_period_ms(), ray._config.health_check_failure_threshold())
    except AttributeError:  # a Ray without these settings: its defaults
        return LeaseTerms()


def _result(ref: Any) -> object:
    """What a finished call returned, or the exception it raised."""
    try:
        return ray.get(ref, timeout=0)
    except RayError as error:
        return error


def _nodes() -> list[dict[str, Any]]:
    try:
        nodes: list[dict[str, Any]] = ray.nodes()
    except RayError:
        return []
    return nodes


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _last_lines(text: str, count: int) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:]) if count > 0 else ""


def _implements_backend(backend: RayBackend) -> Backend:
    """Never called: makes mypy check that `RayBackend` satisfies the `Backend` protocol."""
    return backend
