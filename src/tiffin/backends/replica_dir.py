"""The on-disk record of one local replica: the only state that outlives the Tiffin process.

Replicas keep running when Tiffin dies, so everything a new Tiffin needs to adopt them (which
process is theirs, which port and resources they hold) lives in `<root>/<replica_id>/`, next to
the replica's own BENTOML_HOME, temp dir and logs. The shim writes `exit.json` there when the
replica ends, so the reason survives even if nobody was watching. Writes are atomic (temp file then
rename): a crash never leaves half a record.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RECORD_FILE = "replica.json"
EXIT_FILE = "exit.json"
TREE_FILE = "tree.json"
SHIM_LOG_FILE = "shim.log"
OUTPUT_LOG_FILE = "output.log"


@dataclass(frozen=True)
class ReplicaPaths:
    """Where each piece of one replica lives under its directory."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def record(self) -> Path:
        return self.root / RECORD_FILE

    @property
    def exit_record(self) -> Path:
        return self.root / EXIT_FILE

    @property
    def tree(self) -> Path:
        return self.root / TREE_FILE

    @property
    def shim_log(self) -> Path:
        return self.root / SHIM_LOG_FILE

    @property
    def output_log(self) -> Path:
        return self.root / OUTPUT_LOG_FILE


@dataclass(frozen=True)
class ReplicaRecord:
    """What Tiffin needs to adopt a running replica, or to report a dead one (no secrets)."""

    replica_id: str
    deployment: str
    service: str
    revision: str
    port: int
    isolation: str
    cpu_millicores: int
    memory_bytes: int
    gpu_indices: tuple[int, ...]
    cpu_cores: tuple[int, ...]
    pid: int | None = None  # the launcher: every process of the replica descends from it
    create_time: float | None = None

    @staticmethod
    def from_json(data: dict[str, Any]) -> "ReplicaRecord":
        fields = dict(data)
        fields["gpu_indices"] = tuple(fields["gpu_indices"])
        fields["cpu_cores"] = tuple(fields["cpu_cores"])
        return ReplicaRecord(**fields)


@dataclass(frozen=True)
class ExitRecord:
    """How the replica's command ended, as the shim saw it."""

    reason: str
    exit_code: int | None = None
    signal: int | None = None


def write_json(path: Path, data: object) -> None:
    """Replace `path` atomically with `data` as JSON."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    """The parsed JSON at `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_record(paths: ReplicaPaths, record: ReplicaRecord) -> None:
    write_json(paths.record, asdict(record))


def read_record(paths: ReplicaPaths) -> ReplicaRecord | None:
    data = read_json(paths.record)
    if not isinstance(data, dict):
        return None
    try:
        return ReplicaRecord.from_json(data)
    except (TypeError, KeyError):
        return None


def write_exit(paths: ReplicaPaths, record: ExitRecord) -> None:
    write_json(paths.exit_record, asdict(record))


def read_exit(paths: ReplicaPaths) -> ExitRecord | None:
    data = read_json(paths.exit_record)
    if not isinstance(data, dict):
        return None
    try:
        return ExitRecord(**data)
    except TypeError:
        return None
