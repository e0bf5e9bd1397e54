"""`ReplicaActor`: one replica on one Ray node, run by a `LocalBackend` of its own.

The controller's `RayBackend` creates one detached, named actor per replica; Ray places it on a node
that has the resources the replica asks for. There the actor makes the bento runnable (downloads it
through Tiffin's API into the node's cache and builds or reuses its environment, with the node
materializer the controller handed it), then runs the replica exactly as `tiffin up` would: under a
shim, with probes, output logs and memory limits, bound to the node's address, given what Ray granted
(its CPU share, memory, and the GPUs Ray assigned). It answers status calls while it builds (it is a
threaded actor) and long-polls: `status(known, wait_s)` returns as soon as something changed since the
version the caller knows. A fence process (`fence`) kills the replica if the actor dies, and the
actor kills it itself when its node is cut off from the cluster (`lease`).
"""

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray

from tiffin.backends import launch
from tiffin.backends.capacity import GpuInfo, HostCapacity
from tiffin.backends.local import LocalBackend
from tiffin.backends.protocol import (
    Materialize,
    Materialized,
    ReplicaPhase,
    ReplicaSpec,
    ReplicaStatus,
    Usage,
)
from tiffin.backends.ray import fence
from tiffin.backends.ray.lease import Heard, LeaseTerms, fence_reason

NodeMaterializer = Callable[[Path], Materialize]
"""Given the node's Tiffin directory, how bentos are made runnable on that node (picklable: it travels
from the controller to every actor)."""

NODE_HOME_VARIABLE = "TIFFIN_NODE_HOME"
DEFAULT_NODE_HOME = "~/.tiffin-node"


@dataclass(frozen=True)
class NodeSettings:
    """How actors run their replicas; chosen by the controller, the same on every node."""

    node_home: str | None = None  # None: the node's TIFFIN_NODE_HOME, else ~/.tiffin-node
    stop_grace_s: float = 15.0
    probe_interval_s: float = 0.1
    liveness_interval_s: float = 5.0
    command: launch.Command | None = None  # the replica's command line (tests pass a fake)
    lease: LeaseTerms = field(default_factory=LeaseTerms)  # the controller sets the cluster's

    def home(self) -> Path:
        raw = self.node_home or os.environ.get(NODE_HOME_VARIABLE) or DEFAULT_NODE_HOME
        return Path(raw).expanduser().absolute()


@dataclass(frozen=True)
class ActorStatus:
    """What an actor reports: its replica as the local backend on its node sees it, and where it is."""

    status: ReplicaStatus
    version: int  # grows whenever the replica's phase changes
    node_ip: str
    node_id: str
    usage: Usage | None = None


@dataclass
class _State:
    phase: ReplicaPhase
    reason: str
    version: int = 0
    backend: LocalBackend | None = None
    stopped: bool = False
    fenced: str | None = None  # why the actor killed its replica itself
    notes: list[str] = field(default_factory=list)  # what the actor itself has to say in the log


class ReplicaActor:
    """Runs one replica on the node Ray placed it on; see the module docstring."""

    def __init__(self, spec: ReplicaSpec, materializer: NodeMaterializer, settings: NodeSettings) -> None:
        self._spec = spec
        self._materializer = materializer
        self._settings = settings
        self._node_ip = ray.util.get_node_ip_address()
        self._node_id = ray.get_runtime_context().get_node_id()
        self._gpu_ids = [int(gpu) for gpu in ray.get_gpu_ids()]
        self._home = settings.home()
        self._root = self._home / "replicas" / spec.replica_id
        self._changed = threading.Condition()
        self._state = _State(ReplicaPhase.PENDING, f"preparing the bento on Ray node {self._node_ip}")
        self._heard = Heard(time.monotonic(), alive=True)
        threading.Thread(target=self._prepare, name="tiffin-replica-prepare", daemon=True).start()
        threading.Thread(target=self._keep_lease, name="tiffin-replica-lease", daemon=True).start()

    # --- called by the controller ----------------------------------------------------------------

    def status(self, known: int | None = None, wait_s: float = 0.0) -> ActorStatus:
        """The replica's status, once its version differs from `known` or `wait_s` has passed."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            while known is not None and self._state.version == known:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            state = self._state
            backend = state.backend
        return self._report(state, backend)

    def stop(self, tail: int) -> str:
        """Stop the replica gracefully (SIGTERM, grace, SIGKILL: the shim does it), wait until its
        processes are gone, remove its directory; returns the last `tail` lines of its output."""
        with self._changed:
            self._state.stopped = True
            backend = self._state.backend
        output = ""
        if backend is not None:
            backend.close(stop_replicas=True)
            output = backend.read_log(self._spec.replica_id, tail)
        output = "".join(line + "\n" for line in self._state.notes) + output
        fence.clear(self._root)  # also ends the fence process
        return output

    def read_log(self, tail: int) -> str:
        with self._changed:
            backend, notes = self._state.backend, list(self._state.notes)
        if backend is None:
            return "".join(line + "\n" for line in notes[-tail:])
        return backend.read_log(self._spec.replica_id, tail)

    # --- on the node -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        try:
            materialized = self._materializer(self._home)(self._spec.bento)
        except Exception as error:  # any failure here is the replica's, reported as FAILED
            self._fail(f"could not prepare the bento on Ray node {self._node_ip}: {_say(error)}")
            return
        try:
            self._run(materialized)
        except Exception as error:
            self._fail(f"could not start on Ray node {self._node_ip}: {_say(error)}")

    def _run(self, materialized: Materialized) -> None:
        with self._changed:
            if self._state.stopped:
                return
            fence.clear(self._root)  # what a dead actor of the same replica may have left
            self._root.mkdir(parents=True)
            backend = LocalBackend(
                self._root,
                self._granted(),
                lambda _bento: materialized,
                command=self._settings.command,
                bind_host=self._node_ip,
                address=self._node_ip,
                probe_interval_s=self._settings.probe_interval_s,
                liveness_interval_s=self._settings.liveness_interval_s,
                stop_grace_s=self._settings.stop_grace_s,
                pin_cpus=False,
            )
            backend.subscribe(self._changed_by_itself)
            fence.spawn(self._root)
            backend.start(self._spec)
            self._state.backend = backend
            self._bump()

    def _keep_lease(self) -> None:
        """Ask the head about this node every `check_s` (on a thread of its own: an answer may never
        come) and fence the replica when `fence_reason` says so."""
        terms = self._settings.lease
        asking: threading.Thread | None = None
        while True:
            time.sleep(terms.check_s)
            with self._changed:
                if self._state.stopped:
                    return
            if asking is None or not asking.is_alive():
                asking = threading.Thread(target=self._ask_head, name="tiffin-replica-ask", daemon=True)
                asking.start()
            reason = fence_reason(terms, self._heard, time.monotonic())
            if reason is not None:
                self._fence(reason)
                return

    def _ask_head(self) -> None:
        try:
            nodes = ray.nodes()
        except Exception:  # no answer is what the lease counts; any error is one
            return
        mine = next((node for node in nodes if node.get("NodeID") == self._node_id), None)
        self._heard = Heard(time.monotonic(), alive=mine is None or bool(mine.get("Alive")))

    def _fence(self, reason: str) -> None:
        """Kill the replica at once (no grace: a replacement may be starting elsewhere)."""
        said = f"fenced on Ray node {self._node_ip}: {reason}"
        with self._changed:
            self._state.stopped, self._state.fenced = True, said
            self._state.notes.append(said)
            self._bump()
        fence.kill_replicas(self._root)

    def _granted(self) -> HostCapacity:
        """What Ray granted this actor: the replica's own request, and the GPUs Ray assigned."""
        resources = self._spec.resources
        name = resources.gpu_type or "gpu"
        return HostCapacity(
            cpu_millicores=resources.cpu_millicores or 0,
            memory_bytes=resources.memory_bytes or 0,
            gpus=tuple(GpuInfo(index, name, 0) for index in self._gpu_ids),
        )

    def _fail(self, reason: str) -> None:
        with self._changed:
            self._state.phase, self._state.reason = ReplicaPhase.FAILED, reason
            self._state.notes.append(reason)
            self._bump()

    def _changed_by_itself(self) -> None:
        with self._changed:
            self._bump()

    def _bump(self) -> None:
        """Under `_changed`: a new version, and wake every waiting status call."""
        self._state.version += 1
        self._changed.notify_all()

    def _report(self, state: _State, backend: LocalBackend | None) -> ActorStatus:
        spec = self._spec
        status = ReplicaStatus(
            spec.replica_id, spec.deployment, spec.service, spec.revision, state.phase, reason=state.reason
        )
        usage = None
        if state.fenced is not None:
            status = replace(status, phase=ReplicaPhase.FAILED, reason=state.fenced)
        elif backend is not None:
            observed = backend.observe()
            if observed:
                status = observed[0]
            usage = backend.usage().get(spec.replica_id)
        return ActorStatus(status, state.version, self._node_ip, self._node_id, usage)

    def __repr__(self) -> str:
        return f"ReplicaActor({self._spec.replica_id})"


def _say(error: Exception) -> str:
    text = str(error).strip()
    return text if text else type(error).__name__
