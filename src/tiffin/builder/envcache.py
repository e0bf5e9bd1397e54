"""The cache of built environments: one directory per environment key, built once and shared.

An environment is built in a temporary directory, renamed to `envs/<key>/`, and only then marked
complete by writing `.complete`; anything without the marker is a half-built leftover and is
rebuilt. Building holds `locks/<key>.lock`, so when two threads or processes want the same
environment the second waits and then reuses what the first built.
"""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tiffin.builder.buildlog import BuildLog
from tiffin.builder.locks import exclusive_lock
from tiffin.builder.unpack import TEMP_PREFIX, remove_leftovers

COMPLETE_MARKER = ".complete"

BuildInto = Callable[[Path, Path], None]
"""Builds an environment at its first argument (not yet existing), using the second as scratch."""


class EnvCache:
    def __init__(self, root: Path) -> None:
        self.envs = root / "envs"
        self.locks = root / "locks"

    def path(self, key: str) -> Path:
        return self.envs / key

    def is_complete(self, key: str) -> bool:
        return (self.path(key) / COMPLETE_MARKER).is_file()

    def ensure(self, key: str, build: BuildInto, log: BuildLog, description: str) -> Path:
        """The complete environment `key`, built with `build` unless it already exists.

        `description` (the environment's inputs) is the marker's content.
        """
        if self.is_complete(key):
            _note_hit(log, self.path(key))
            return self.path(key)
        with exclusive_lock(self.locks / f"{key}.lock", lambda: _note_wait(log, key)):
            if self.is_complete(key):
                _note_hit(log, self.path(key))
            else:
                self._rebuild(key, build, log, description)
        return self.path(key)

    def _rebuild(self, key: str, build: BuildInto, log: BuildLog, description: str) -> None:
        """Build `key` from scratch; the caller holds its lock, so leftovers are dead."""
        final = self.path(key)
        shutil.rmtree(final, ignore_errors=True)
        remove_leftovers(self.envs, f"{TEMP_PREFIX}{key}-")
        self.envs.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{key}-", dir=self.envs))
        try:
            log.note(f"Environment {key} is not built yet (cache miss); building it")
            build(work / "env", work)
            os.replace(work / "env", final)
            _write_marker(final, description)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.note(f"Environment {key} is complete at {final}")


def _write_marker(env_dir: Path, description: str) -> None:
    """Write `.complete` atomically: it either exists with its full content or not at all."""
    partial = env_dir / f"{COMPLETE_MARKER}.partial"
    partial.write_text(description, encoding="utf-8")
    os.replace(partial, env_dir / COMPLETE_MARKER)


def _note_hit(log: BuildLog, env_dir: Path) -> None:
    log.note(f"Environment {env_dir.name} is complete (cache hit); reusing {env_dir}")


def _note_wait(log: BuildLog, key: str) -> None:
    log.note(f"Another build holds environment {key}; waiting for it")
