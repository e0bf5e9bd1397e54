"""The one seam between Tiffin and whatever runs replicas: specs in, observed statuses out.

The reconciler decides; a backend only executes `start`/`stop` and reports what it sees. `LocalBackend`
runs replicas as processes on this machine, `RayBackend` as Ray actors on a cluster's nodes; a
`FakeBackend` scripts them in unit tests.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from tiffin.backends.ended import EndedReplica


class ReplicaPhase(StrEnum):
    PENDING = "pending"  # accepted but not started (e.g. it does not fit on this machine yet)
    STARTING = "starting"  # process running, /readyz not yet 200
    RUNNING = "running"  # ready: may receive traffic
    STOPPING = "stopping"  # draining / being stopped
    FAILED = "failed"  # exited or was killed; `reason` says why


@dataclass(frozen=True)
class Resources:
    """What one replica requests; None means "no request" (best effort, never refused).

    With `gpu_type` (e.g. `nvidia-tesla-t4`, from the instance type), the `gpus` must all be of that
    type; without it, any GPU will do."""

    cpu_millicores: int | None = None
    memory_bytes: int | None = None
    gpus: int = 0
    gpu_type: str | None = None


@dataclass(frozen=True)
class MountedFile:
    """A secret mounted as a file: `path` is absolute, or relative to the replica's BENTOML_HOME."""

    path: str
    content: str


@dataclass(frozen=True)
class BentoRef:
    """A bento as any machine can find it: its tag and the models it uses (fetched from the store)."""

    tag: str  # "repo:version"
    models: tuple[str, ...] = ()  # "name:version" of each model it loads


@dataclass(frozen=True)
class Materialized:
    """A bento made runnable on one machine: unpacked (models under models/), with its environment."""

    bento_dir: Path
    python: Path  # the interpreter of the bento's built environment


Materialize = Callable[[BentoRef], Materialized]
"""Makes a bento runnable where the backend runs replicas (unpack, build or reuse the environment);
raises OSError or ValueError with a sentence when it cannot."""


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to run one replica of one Service of a bento, on any machine: no local path."""

    replica_id: str  # unique and filesystem-safe, e.g. "d1-echo-3f2a9c-0"
    deployment: str
    service: str
    revision: str
    bento: BentoRef
    env: Mapping[str, str] = field(default_factory=dict)
    depends: Mapping[str, str] = field(default_factory=dict)  # Service name -> URL
    resources: Resources = field(default_factory=Resources)
    files: tuple[MountedFile, ...] = ()


@dataclass(frozen=True)
class ReplicaStatus:
    replica_id: str
    deployment: str
    service: str
    revision: str
    phase: ReplicaPhase
    url: str | None = None  # http://<the backend's address for it>:<port> once the process runs
    pid: int | None = None
    reason: str = ""
    last_error: str = ""  # while starting: the exception its output last reported ("" if none)


@dataclass(frozen=True)
class Usage:
    """What a replica's process tree has used: CPU seconds so far, resident memory now, and the mean
    utilisation of its GPUs now (None without GPUs)."""

    cpu_seconds: float
    memory_bytes: int
    gpu_percent: float | None = None


class Backend(Protocol):
    def start(self, spec: ReplicaSpec) -> None:
        """Begin starting a replica; returns at once (phase PENDING or STARTING)."""
        ...

    def stop(self, replica_id: str) -> None:
        """Begin a graceful stop (SIGTERM, grace period, SIGKILL) of the whole process tree."""
        ...

    def forget(self, replica_id: str) -> None:
        """Drop a FAILED replica's record (its processes are already gone)."""
        ...

    def observe(self) -> list[ReplicaStatus]:
        """Every replica this backend knows, including adopted and failed ones."""
        ...

    def usage(self) -> dict[str, Usage]:
        """CPU and memory of every running replica, by replica id."""
        ...

    def read_log(self, replica_id: str, tail: int) -> str:
        """The last `tail` lines of the replica's stdout/stderr, also for a while after it ended ("" if
        unknown)."""
        ...

    def ended(self, deployment: str) -> list[EndedReplica]:
        """The deployment's replicas that are gone but whose output is still kept, oldest first."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (on any thread) whenever a replica changes phase by itself: ready, failed,
        or gone after a stop, so the reconciler can step at once instead of at its next interval."""
        ...

    def close(self, stop_replicas: bool) -> None:
        """Stop watching; with `stop_replicas`, stop every replica first and wait for them."""
        ...
