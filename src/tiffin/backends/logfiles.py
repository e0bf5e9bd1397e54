"""Size-capped, rotating log files for a replica's output, reading their last lines, and what they say
went wrong.

A replica may run for weeks and print without end; its output must neither fill the disk nor
depend on Tiffin being alive to read a pipe. The shim owns the writer (it outlives Tiffin), and
Tiffin only reads the files. Files are `output.log` (newest), `output.log.1`, ... (older). A replica
that fails is explained by its output: the exception its last traceback ended with, or its last lines.
"""

import itertools
import os
import threading
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_FILES = 3
NOTE_PREFIX = "[tiffin] "  # starts the shim's own lines in the log
EXCERPT_LINES = 3  # lines of output quoted when no traceback says what went wrong
MAX_EXCERPT = 500  # characters: a reason is one line in a table, not a log
_TRACEBACK = "Traceback (most recent call last):"
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


def error_excerpt(output: str) -> str:
    """The exception the last Python traceback in `output` ended with (`RuntimeError: boom`), or ""."""
    lines = _replica_lines(output)
    start = next((i for i in range(len(lines) - 1, -1, -1) if _TRACEBACK in lines[i]), None)
    if start is None:
        return ""
    frames = lines[start + 1 :]
    exception = next((line for line in frames if line.strip() and not line[:1].isspace()), "")
    return _one_line(exception)


def failure_excerpt(output: str) -> str:
    """What a replica that ended printed last about why: its exception, else its last few lines."""
    exception = error_excerpt(output)
    if exception:
        return exception
    lines = [line.strip() for line in _replica_lines(output) if line.strip()]
    return _one_line(" | ".join(lines[-EXCERPT_LINES:]))


def _replica_lines(output: str) -> list[str]:
    """The lines the replica printed, without the shim's notes."""
    return [line for line in output.splitlines() if not line.startswith(NOTE_PREFIX)]


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_EXCERPT else text[: MAX_EXCERPT - 1] + "…"
