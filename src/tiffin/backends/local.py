"""`LocalBackend`: replicas as process trees on this machine, owned by shims that outlive Tiffin.

Each replica runs under a shim (`tiffin.backends.shim`), normally PID 1 of its own PID namespace,
which kills the whole tree when the replica ends. The launcher is not tied to Tiffin (own session,
no pipes), so a crashed or restarted Tiffin finds its replicas still serving and adopts them from
their `replica.json` by (pid, create_time). Capacity is never overcommitted: what does not fit
waits as PENDING with a reason and starts when room frees. A daemon thread turns process exits
and HTTP probes into phases; every public method returns at once.
"""

import dataclasses
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from tiffin.backends import launch, logfiles
from tiffin.backends.capacity import HostCapacity, gpu_utilisation
from tiffin.backends.ended import EndedLogs, EndedReplica
from tiffin.backends.isolation import Isolation, detect_isolation
from tiffin.backends.ledger import Allocation, Ledger, Shortage
from tiffin.backends.leftovers import kill_leftovers
from tiffin.backends.probes import LIVE_PATH, READY_PATH, Prober
from tiffin.backends.processes import (
    ProcessId,
    TrackedProcess,
    describe_wait_status,
    identify,
    kill_all,
    tree,
)
from tiffin.backends.protocol import (
    Backend,
    BentoRef,
    Materialize,
    Materialized,
    ReplicaPhase,
    ReplicaSpec,
    ReplicaStatus,
    Usage,
)
from tiffin.backends.replica_dir import (
    ExitRecord,
    ReplicaPaths,
    ReplicaRecord,
    read_exit,
    read_record,
    write_record,
)
from tiffin.backends.shim import OOM_REASON
from tiffin.backends.usage import tree_usage

log = logging.getLogger("tiffin.backends")

LIVENESS_FAILED = "liveness probe failed"
GPU_SAMPLE_S = 2.0
_LIVE_PHASES = (ReplicaPhase.STARTING, ReplicaPhase.RUNNING, ReplicaPhase.STOPPING)
_SHIM_GRACE_SHARE = 0.8  # the shim escalates first and records why; our SIGKILL is the backstop
_CLOSE_MARGIN_S = 10.0
_CLOSE_POLL_S = 0.05
_EXCERPT_TAIL = 200  # lines of output searched for what went wrong
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")


@dataclass
class _Replica:
    """Tiffin's view of one replica; mutated only under the backend's lock."""

    replica_id: str
    deployment: str
    service: str
    revision: str
    phase: ReplicaPhase
    reason: str = ""
    spec: ReplicaSpec | None = None  # kept while PENDING
    record: ReplicaRecord | None = None  # once launched
    process: TrackedProcess | None = None  # while its processes may be alive
    live_failures: int = 0
    next_live_probe: float = 0.0
    stop_deadline: float | None = None
    kill_reason: str | None = None
    forgotten: bool = False
    last_error: str = ""  # the exception its output last reported while starting
    output_size: int = -1  # the size of its output log when `last_error` was read

    def status(self, address: str) -> ReplicaStatus:
        """As the reconciler sees it; `address` is where other machines (or this one) reach its port."""
        running = self.phase in _LIVE_PHASES and self.record is not None
        port = self.record.port if self.record is not None else None
        return ReplicaStatus(
            replica_id=self.replica_id,
            deployment=self.deployment,
            service=self.service,
            revision=self.revision,
            phase=self.phase,
            url=f"http://{address}:{port}" if running else None,
            pid=self.record.pid if self.record is not None else None,
            reason=self.reason,
            last_error=self.last_error,
        )


@dataclass(frozen=True)
class _Probe:
    replica: _Replica
    path: str
    url: str


class LocalBackend:
    """Runs replicas as local process trees; see the module docstring."""

    def __init__(
        self,
        root: Path,
        host: HostCapacity,
        materialize: Materialize,
        clock_time: Callable[[], float] = time.monotonic,
        command: launch.Command | None = None,
        *,
        bind_host: str = "127.0.0.1",
        address: str | None = None,
        probe_interval_s: float = 0.1,
        liveness_interval_s: float = 5.0,
        liveness_failures: int = 3,
        probe_timeout_s: float = 2.0,
        stop_grace_s: float = 15.0,
        isolation: Isolation | None = None,
        log_max_bytes: int = logfiles.DEFAULT_MAX_BYTES,
        log_files: int = logfiles.DEFAULT_FILES,
        ended: EndedLogs | None = None,
        pin_cpus: bool = True,
    ) -> None:
        self._root = root
        self._materialize = materialize
        self._materialized: dict[BentoRef, Materialized] = {}
        self._bind_host = bind_host  # where replicas listen
        self._address = address or bind_host  # where they are reached
        self._now = clock_time
        self._command = command or launch.default_command
        self._probe_interval_s = probe_interval_s
        self._liveness_interval_s = liveness_interval_s
        self._liveness_failures = liveness_failures
        self._stop_grace_s = stop_grace_s
        self._isolation = isolation or detect_isolation()
        self._log_max_bytes = log_max_bytes
        self._log_files = log_files
        self._ended = ended or EndedLogs(root)
        # Without pinning (several backends share the machine's cores, as Ray actors do), a replica's
        # CPU share is a reservation only.
        self._ledger = Ledger(host, sorted(os.sched_getaffinity(0)) if pin_cpus else ())
        self._prober = Prober(probe_timeout_s)
        self._replicas: dict[str, _Replica] = {}
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._subscribers: list[Callable[[], None]] = []
        self._gpus_sampled: tuple[float, dict[int, float]] | None = None
        root.mkdir(parents=True, exist_ok=True)
        self._adopt_all()
        self._watcher = threading.Thread(target=self._watch, name="tiffin-local-backend", daemon=True)
        self._watcher.start()

    # --- the Backend protocol -------------------------------------------------------------------

    def start(self, spec: ReplicaSpec) -> None:
        if not _SAFE_ID.fullmatch(spec.replica_id):
            raise ValueError(f"replica id {spec.replica_id!r} is not a safe directory name")
        with self._lock:
            if spec.replica_id in self._replicas:
                return
            self._replicas[spec.replica_id] = _Replica(
                spec.replica_id, spec.deployment, spec.service, spec.revision, ReplicaPhase.PENDING, spec=spec
            )
            self._schedule()

    def stop(self, replica_id: str) -> None:
        with self._lock:
            replica = self._replicas.get(replica_id)
            if replica is None or replica.phase is ReplicaPhase.STOPPING:
                return
            if replica.phase in (ReplicaPhase.PENDING, ReplicaPhase.FAILED):
                self._drop(replica)
                return
            replica.phase, replica.reason = ReplicaPhase.STOPPING, "stop requested"
            replica.stop_deadline = self._now() + self._stop_grace_s
            if not self._signal_shim(replica, signal.SIGTERM):
                self._kill(replica)

    def forget(self, replica_id: str) -> None:
        with self._lock:
            replica = self._replicas.get(replica_id)
            if replica is None:
                return
            if replica.phase is not ReplicaPhase.FAILED:
                raise ValueError(f"replica {replica_id} is {replica.phase}; stop it instead of forgetting it")
            self._drop(replica)

    def observe(self) -> list[ReplicaStatus]:
        with self._lock:
            replicas = [replica for replica in self._replicas.values() if not replica.forgotten]
            return [replica.status(self._address) for replica in replicas]

    def read_log(self, replica_id: str, tail: int) -> str:
        if not _SAFE_ID.fullmatch(replica_id):
            return ""
        paths = self._paths(replica_id)
        path = paths.output_log if paths.record.is_file() else self._ended.output_log(replica_id)
        return logfiles.tail(path, tail, self._log_files) if path is not None else ""

    def ended(self, deployment: str) -> list[EndedReplica]:
        return self._ended.of(deployment)

    def close(self, stop_replicas: bool) -> None:
        self._closing.set()
        if self._watcher.is_alive() and self._watcher is not threading.current_thread():
            self._watcher.join()
        if stop_replicas:
            self._stop_everything()
        self._prober.close()

    # --- starting -------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Start every PENDING replica that fits now, in the order they were asked for."""
        for replica in list(self._replicas.values()):
            if replica.phase is ReplicaPhase.PENDING and replica.spec is not None:
                granted = self._ledger.reserve(replica.replica_id, replica.spec.resources)
                if isinstance(granted, Shortage):
                    replica.reason = granted.reason
                else:
                    self._launch(replica, replica.spec, granted)

    def _launch(self, replica: _Replica, spec: ReplicaSpec, allocation: Allocation) -> None:
        paths = self._paths(spec.replica_id)
        try:
            record = self._record_for(spec, allocation)
            shutil.rmtree(paths.root, ignore_errors=True)  # a stray directory without a record
            launch.prepare(paths, spec.files)
            write_record(paths, record)  # before spawning: a crash in between is still explained
            record = self._spawn(spec, paths, record, allocation)
        except (OSError, ValueError) as error:
            self._ledger.release(spec.replica_id)
            replica.spec, replica.phase = None, ReplicaPhase.FAILED
            replica.reason = f"could not start: {error}"
            return
        replica.spec, replica.record, replica.reason = None, record, ""
        replica.process = TrackedProcess(ProcessId(record.pid or 0, record.create_time or 0.0))
        replica.phase = ReplicaPhase.STARTING
        log.debug("replica %s starting as pid %s on port %s", spec.replica_id, record.pid, record.port)

    def _record_for(self, spec: ReplicaSpec, allocation: Allocation) -> ReplicaRecord:
        taken = {r.record.port for r in self._replicas.values() if r.record is not None}
        return ReplicaRecord(
            replica_id=spec.replica_id,
            deployment=spec.deployment,
            service=spec.service,
            revision=spec.revision,
            port=launch.free_port(taken, self._bind_host),
            isolation=self._isolation.value,
            cpu_millicores=allocation.cpu_millicores,
            memory_bytes=allocation.memory_bytes,
            gpu_indices=allocation.gpu_indices,
            cpu_cores=allocation.cpu_cores,
        )

    def _spawn(
        self, spec: ReplicaSpec, paths: ReplicaPaths, record: ReplicaRecord, allocation: Allocation
    ) -> ReplicaRecord:
        bento = self._runnable(spec.bento)
        options = {
            "--grace": f"{self._stop_grace_s * _SHIM_GRACE_SHARE:g}",
            "--cwd": str(bento.bento_dir if bento.bento_dir.is_dir() else paths.root),
            "--log-max-bytes": str(self._log_max_bytes),
            "--log-files": str(self._log_files),
        }
        command = self._command(spec, bento, self._bind_host, record.port)
        argv = launch.shim_argv(self._isolation, paths, command, allocation, options)
        pid = launch.spawn_launcher(argv, launch.replica_env(spec, paths, allocation), paths)
        identity = identify(pid)  # our unreaped child: it exists even if it already exited
        created = identity.create_time if identity is not None else time.time()
        launched = dataclasses.replace(record, pid=pid, create_time=created)
        write_record(paths, launched)
        return launched

    def _runnable(self, bento: BentoRef) -> Materialized:
        """The bento made runnable here, once per tag (the environment cache makes it cheap anyway)."""
        if bento not in self._materialized:
            self._materialized[bento] = self._materialize(bento)
        return self._materialized[bento]

    # --- adoption -------------------------------------------------------------------------------

    def _adopt_all(self) -> None:
        """Take over the replicas a previous Tiffin left in `root`, alive or dead."""
        for directory in sorted(self._root.iterdir()):
            if directory.is_dir() and not directory.name.startswith("."):
                self._adopt(ReplicaPaths(directory))

    def _adopt(self, paths: ReplicaPaths) -> None:
        record = read_record(paths)
        if record is None:
            log.warning("ignoring %s: it has no readable %s", paths.root, paths.record.name)
            return
        replica = _Replica(
            record.replica_id, record.deployment, record.service, record.revision, ReplicaPhase.FAILED
        )
        replica.record = record
        self._replicas[record.replica_id] = replica
        alive = self._find_launcher(record)
        if alive is None:
            replica.reason = self._reason_for_dead(record, paths)
            _kill_leftovers(record, paths)
            return
        self._ledger.restore(record.replica_id, _allocation_of(record))
        replica.process, replica.phase = alive, ReplicaPhase.STARTING
        log.debug("adopted replica %s (pid %s)", record.replica_id, record.pid)

    @staticmethod
    def _find_launcher(record: ReplicaRecord) -> TrackedProcess | None:
        """The launcher if it still runs (an exited one that is our child gets reaped here)."""
        if record.pid is None or record.create_time is None:
            return None
        launcher = TrackedProcess(ProcessId(record.pid, record.create_time))
        return launcher if launcher.alive() else None

    def _reason_for_dead(self, record: ReplicaRecord, paths: ReplicaPaths) -> str:
        if record.pid is None:
            return "Tiffin stopped while starting this replica"
        ended = read_exit(paths)
        if ended is None:
            return "its processes ended while Tiffin was not running"
        return self._explained(ended, paths)

    def _explained(self, ended: ExitRecord, paths: ReplicaPaths) -> str:
        """How the replica ended, with what its output says went wrong: the exception it printed last,
        or (when it exited with an error code) its last lines."""
        output = logfiles.tail(paths.output_log, _EXCERPT_TAIL, self._log_files)
        if ended.exit_code:
            excerpt = logfiles.failure_excerpt(output)
        else:
            excerpt = logfiles.error_excerpt(output) if ended.reason != OOM_REASON else ""
        return f"{ended.reason}: {excerpt}" if excerpt else ended.reason

    def usage(self) -> dict[str, Usage]:
        with self._lock:
            running = [
                (replica.replica_id, replica.process, replica.record.gpu_indices if replica.record else ())
                for replica in self._replicas.values()
                if replica.phase is ReplicaPhase.RUNNING and replica.process is not None
            ]
        gpus = self._gpu_utilisation() if any(indices for _, _, indices in running) else {}
        found = {}
        for replica_id, process, indices in running:
            root = process.process()
            if root is not None:
                found[replica_id] = replace(tree_usage(root), gpu_percent=_mean(gpus, indices))
        return found

    def _gpu_utilisation(self) -> dict[int, float]:
        """nvidia-smi takes tens of milliseconds: ask it at most every `GPU_SAMPLE_S`."""
        now = self._now()
        if self._gpus_sampled is None or now - self._gpus_sampled[0] >= GPU_SAMPLE_S:
            self._gpus_sampled = (now, gpu_utilisation())
        return self._gpus_sampled[1]

    # --- watching -------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._closing.wait(self._probe_interval_s):
            try:
                self._tick()
            except Exception:  # the watcher must survive anything one replica does
                log.exception("local backend watcher tick failed")

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (on the watcher thread) whenever a replica changes phase by itself:
        ready, failed, or gone after a stop."""
        self._subscribers.append(callback)

    def _tick(self) -> None:
        with self._lock:
            before = self._phases()
            self._sweep()
            probes = self._due_probes()
        results = [(probe, self._prober.ok(probe.url, probe.path)) for probe in probes]
        with self._lock:
            for probe, ok in results:
                self._apply_probe(probe, ok)
            self._schedule()
            self._read_errors()
            changed = self._phases() != before
        if changed:
            for callback in self._subscribers:
                callback()

    def _phases(self) -> dict[str, ReplicaPhase]:
        return {replica_id: replica.phase for replica_id, replica in self._replicas.items()}

    def _sweep(self) -> None:
        """Notice exited trees and stops that ran past their grace period."""
        for replica in list(self._replicas.values()):
            if replica.process is not None and not replica.process.alive():
                self._on_exit(replica)
            elif replica.stop_deadline is not None:
                self._press_stop(replica, replica.stop_deadline)

    def _press_stop(self, replica: _Replica, deadline: float) -> None:
        """SIGTERM again (a shim still starting up has not taken it yet), SIGKILL after the grace."""
        if self._now() < deadline:
            self._signal_shim(replica, signal.SIGTERM)
            return
        log.warning("replica %s outlived its stop grace period: killing it", replica.replica_id)
        self._kill(replica)
        replica.stop_deadline = None

    def _on_exit(self, replica: _Replica) -> None:
        process, replica.process = replica.process, None
        self._ledger.release(replica.replica_id)
        paths = self._paths(replica.replica_id)
        ended = read_exit(paths)
        if ended is None:
            _kill_leftovers(replica.record, paths)
        if replica.phase is ReplicaPhase.STOPPING or replica.forgotten:
            self._remove(replica)
            return
        if replica.phase is not ReplicaPhase.FAILED:
            replica.phase = ReplicaPhase.FAILED
            isolation = replica.record.isolation if replica.record is not None else None
            replica.reason = replica.kill_reason or (
                self._explained(ended, paths) if ended else _shim_died(process, isolation)
            )
        log.debug("replica %s failed: %s", replica.replica_id, replica.reason)

    def _read_errors(self) -> None:
        """What starting replicas' output says went wrong (bentoml retries a Service whose `__init__`
        raises, so such a replica stays unready and says why only in its output)."""
        for replica in self._replicas.values():
            if replica.phase is not ReplicaPhase.STARTING:
                continue
            output = self._paths(replica.replica_id).output_log
            size = output.stat().st_size if output.is_file() else 0
            if size != replica.output_size:
                replica.output_size = size
                replica.last_error = logfiles.error_excerpt(logfiles.tail(output, _EXCERPT_TAIL, 1))

    def _due_probes(self) -> list[_Probe]:
        probes = []
        now = self._now()
        for replica in self._replicas.values():
            url = replica.status(self._address).url
            if url is None:
                continue
            if replica.phase is ReplicaPhase.STARTING:
                probes.append(_Probe(replica, READY_PATH, url))
            elif replica.phase is ReplicaPhase.RUNNING and now >= replica.next_live_probe:
                replica.next_live_probe = now + self._liveness_interval_s
                probes.append(_Probe(replica, LIVE_PATH, url))
        return probes

    def _apply_probe(self, probe: _Probe, ok: bool) -> None:
        replica = probe.replica
        if self._replicas.get(replica.replica_id) is not replica or replica.process is None:
            return
        if probe.path == READY_PATH and ok and replica.phase is ReplicaPhase.STARTING:
            replica.phase, replica.live_failures = ReplicaPhase.RUNNING, 0
            replica.next_live_probe = self._now() + self._liveness_interval_s
            log.debug("replica %s is ready", replica.replica_id)
        elif probe.path == LIVE_PATH and replica.phase is ReplicaPhase.RUNNING:
            replica.live_failures = 0 if ok else replica.live_failures + 1
            if replica.live_failures >= self._liveness_failures:
                self._fail(replica, LIVENESS_FAILED)

    # --- stopping -------------------------------------------------------------------------------

    def _fail(self, replica: _Replica, reason: str) -> None:
        replica.phase, replica.reason, replica.kill_reason = ReplicaPhase.FAILED, reason, reason
        log.debug("replica %s: %s; killing it", replica.replica_id, reason)
        self._kill(replica)

    def _signal_shim(self, replica: _Replica, signum: int) -> bool:
        """Send `signum` to the replica's shim; whether it was found."""
        shim = self._shim(replica)
        if shim is None:
            return False
        try:
            shim.send_signal(signum)
        except psutil.Error:
            return False
        return True

    def _shim(self, replica: _Replica) -> psutil.Process | None:
        launcher = replica.process.process() if replica.process is not None else None
        if launcher is None or replica.record is None:
            return None
        if replica.record.isolation == Isolation.SUBREAPER.value:
            return launcher
        try:  # `unshare --fork` has exactly one child: the shim, PID 1 of the namespace
            children = launcher.children()
        except psutil.Error:
            return None
        return children[0] if children else None

    def _kill(self, replica: _Replica) -> None:
        """SIGKILL the replica's whole tree (the namespace dies with its PID 1 anyway)."""
        launcher = replica.process.process() if replica.process is not None else None
        if launcher is not None:
            kill_all(tree(launcher))
        _kill_leftovers(replica.record, self._paths(replica.replica_id))

    def _drop(self, replica: _Replica) -> None:
        """Forget a replica; one whose processes still die stays hidden until they are gone."""
        if replica.process is not None and replica.process.alive():
            replica.forgotten = True
            self._kill(replica)
            return
        self._remove(replica)

    def _remove(self, replica: _Replica) -> None:
        """Forget a replica whose processes are gone; its output is kept a while (`EndedLogs`)."""
        self._replicas.pop(replica.replica_id, None)
        self._ledger.release(replica.replica_id)
        if replica.record is None:
            return
        paths = self._paths(replica.replica_id)
        ended = read_exit(paths)
        try:
            self._ended.keep(paths, _ended(replica, ended.reason if ended else replica.reason))
        except OSError as error:
            log.warning("could not keep the output of replica %s: %s", replica.replica_id, error)
        shutil.rmtree(paths.root, ignore_errors=True)

    def _stop_everything(self) -> None:
        """Stop every replica and wait (driving the sweep here) until their processes are gone."""
        with self._lock:
            for replica_id in list(self._replicas):
                self.stop(replica_id)
        deadline = self._now() + self._stop_grace_s + _CLOSE_MARGIN_S
        while self._now() < deadline:
            with self._lock:
                self._sweep()
                if all(replica.process is None for replica in self._replicas.values()):
                    return
            time.sleep(_CLOSE_POLL_S)
        log.error("some replicas of %s were still running after close", self._root)

    def _paths(self, replica_id: str) -> ReplicaPaths:
        return ReplicaPaths(self._root / replica_id)


def _ended(replica: _Replica, reason: str) -> EndedReplica:
    return EndedReplica(
        replica.replica_id, replica.deployment, replica.service, replica.revision, reason, time.time()
    )


def _allocation_of(record: ReplicaRecord) -> Allocation:
    return Allocation(record.cpu_millicores, record.memory_bytes, record.gpu_indices, record.cpu_cores)


def _mean(utilisation: dict[int, float], indices: tuple[int, ...]) -> float | None:
    values = [utilisation[i] for i in indices if i in utilisation]
    return sum(values) / len(values) if values else None


def _shim_died(process: TrackedProcess | None, isolation: str | None) -> str:
    """Why a replica ended when its shim could not say (it was killed, or crashed)."""
    reason = "the replica's shim died unexpectedly, taking its processes with it"
    status = process.wait_status if process is not None else None
    if status is None:
        return reason
    if isolation != Isolation.SUBREAPER.value and not os.WIFSIGNALED(status):
        return reason  # `unshare` reports its child's death by signal as a plain failure
    return f"{reason} ({describe_wait_status(status)})"


def _kill_leftovers(record: ReplicaRecord | None, paths: ReplicaPaths) -> None:
    """Without a PID namespace, hunt down what the shim could not (or no longer can) kill."""
    if record is not None and record.isolation == Isolation.SUBREAPER.value:
        kill_leftovers(paths)


def _implements_backend(backend: LocalBackend) -> Backend:
    """Never called: makes mypy check that `LocalBackend` satisfies the `Backend` protocol."""
    return backend
