"""Size-capped, rotating log files for a replica's output, and reading their last lines.

A replica may run for weeks and print without end; its output must neither fill the disk nor
depend on Tiffin being alive to read a pipe. The shim owns the writer (it outlives Tiffin), and
Tiffin only reads the files. Files are `output.log` (newest), `output.log.1`, ... (older).
"""

import itertools
import os
import threading
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_FILES = 3
_BLOCK = 64 * 1024


def rotated(path: Path, files: int) -> list[Path]:
    """The log files of `path`, oldest first."""
    return [path.with_name(f"{path.name}.{index}") for index in range(files - 1, 0, -1)] + [path]


class RotatingLog:
    """Appends bytes to `path`, rotating when it would pass `max_bytes`; safe across threads."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, files: int = DEFAULT_FILES) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._files = max(1, files)
        self._lock = threading.Lock()
        self._file = path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._size and self._size + len(data) > self._max_bytes:
                self._rotate()
            self._file.write(data)
            self._file.flush()
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        names = rotated(self._path, self._files)
        for older, newer in itertools.pairwise(names):
            if newer.exists():
                os.replace(newer, older)
        self._file = self._path.open("ab")
        self._size = 0


def tail(path: Path, lines: int, files: int = DEFAULT_FILES) -> str:
    """The last `lines` lines written to the rotating log at `path` ("" when there is none)."""
    if lines <= 0:
        return ""
    collected: list[bytes] = []
    for name in reversed(rotated(path, files)):
        collected = _last_lines(name, lines + 1 - len(collected)) + collected
        if len(collected) > lines:
            break
    return b"".join(collected[-lines:]).decode("utf-8", errors="replace")


def _last_lines(path: Path, count: int) -> list[bytes]:
    """Up to `count` last lines of one file, read backwards in blocks (each keeps its newline)."""
    try:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            data = b""
            while end > 0 and data.count(b"\n") <= count:
                start = max(0, end - _BLOCK)
                file.seek(start)
                data = file.read(end - start) + data
                end = start
    except OSError:
        return []
    return data.splitlines(keepends=True)[-count:]
