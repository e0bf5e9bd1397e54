"""The output of replicas that ended, kept for a while after they are gone.

A replica that crashes at start is replaced within seconds, and its directory (home, temp dir, secrets)
must go with it; but its output is the only place that says why it crashed. So when a replica's
directory is removed, its log files move to `<root>/.ended/<replica_id>/` with a small `ended.json`
(who it was, why it ended, when), and stay there until they are older than `keep_s` or more than
`keep_per_service` newer ones of the same Service have ended.
"""

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tiffin.backends.replica_dir import OUTPUT_LOG_FILE, SHIM_LOG_FILE, ReplicaPaths, read_json, write_json

ENDED_DIR = ".ended"  # a dot: adoption skips it
ENDED_FILE = "ended.json"
DEFAULT_KEEP_PER_SERVICE = 10
DEFAULT_KEEP_S = 24 * 3600.0


@dataclass(frozen=True)
class EndedReplica:
    """A replica that is gone, and why; its output can still be read."""

    replica_id: str
    deployment: str
    service: str
    revision: str
    reason: str
    ended_at: float  # seconds since the epoch


class EndedLogs:
    def __init__(
        self,
        replicas_root: Path,
        keep_per_service: int = DEFAULT_KEEP_PER_SERVICE,
        keep_s: float = DEFAULT_KEEP_S,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        self._root = replicas_root / ENDED_DIR
        self._keep_per_service = keep_per_service
        self._keep_s = keep_s
        self._now = wall_time

    def keep(self, paths: ReplicaPaths, ended: EndedReplica) -> None:
        """Move the replica's log files here (the caller removes the rest of its directory)."""
        target = self._root / ended.replica_id
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for source in paths.root.iterdir():
            if source.name.startswith((OUTPUT_LOG_FILE, SHIM_LOG_FILE)) and source.is_file():
                os.replace(source, target / source.name)
        write_json(target / ENDED_FILE, asdict(ended))
        self._prune()

    def output_log(self, replica_id: str) -> Path | None:
        """The newest output file of an ended replica (rotated ones lie beside it), if still kept."""
        path = self._root / replica_id / OUTPUT_LOG_FILE
        return path if (self._root / replica_id / ENDED_FILE).is_file() else None

    def of(self, deployment: str) -> list[EndedReplica]:
        """The deployment's ended replicas still kept, oldest first."""
        return [e for e in self._all() if e.deployment == deployment]

    def _all(self) -> list[EndedReplica]:
        found = []
        if self._root.is_dir():
            for directory in self._root.iterdir():
                ended = _read(directory / ENDED_FILE)
                if ended is not None:
                    found.append(ended)
        return sorted(found, key=lambda e: e.ended_at)

    def _prune(self) -> None:
        horizon = self._now() - self._keep_s
        newer: dict[tuple[str, str], int] = {}
        for ended in reversed(self._all()):
            key = (ended.deployment, ended.service)
            newer[key] = newer.get(key, 0) + 1
            if ended.ended_at < horizon or newer[key] > self._keep_per_service:
                shutil.rmtree(self._root / ended.replica_id, ignore_errors=True)


def _read(path: Path) -> EndedReplica | None:
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    try:
        return EndedReplica(**data)
    except TypeError:
        return None
