"""The build log of one bento: timestamped step headers followed by the raw output of each command.

Command output goes straight from the child process to the file (never through Python memory), so a
verbose install of hundreds of packages costs nothing here. Reading back is line-streamed as well:
only the requested tail is kept.
"""

from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tiffin.core.clock import Clock

_SCAN_CHUNK = 64 * 1024


class BuildLog:
    """An append-only log file; use as a context manager to keep it open for a build."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("ab", buffering=0)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.output.close()
        self._handle = None

    @property
    def output(self) -> IO[bytes]:
        """The open file, for a child process to write its stdout and stderr to."""
        if self._handle is None:
            raise RuntimeError("The build log is not open; use it as a context manager.")
        return self._handle

    def step(self, title: str) -> None:
        """Write a step header: `[time] ==> title`."""
        self._write(f"==> {title}")

    def note(self, text: str) -> None:
        """Write an indented, timestamped remark under the current step."""
        self._write(f"    {text}")

    def position(self) -> int:
        """The current end of the file, to look at one step's output later."""
        return self.output.seek(0, 2)

    def mentions(self, needle: bytes, since: int) -> bool:
        """Whether the log contains `needle` (case-insensitive) after byte offset `since`."""
        needle = needle.lower()
        previous = b""
        with self.path.open("rb") as reader:
            reader.seek(since)
            while chunk := reader.read(_SCAN_CHUNK).lower():
                if needle in previous[-len(needle) :] + chunk:
                    return True
                previous = chunk
        return False

    def tail(self, lines: int = 40) -> str:
        return read_tail(self.path, lines)

    def _write(self, line: str) -> None:
        stamp = self._clock.now().isoformat(timespec="seconds")
        self.output.write(f"[{stamp}] {line}\n".encode())


def read_tail(path: Path, lines: int | None) -> str:
    """The last `lines` lines of the file at `path` (all of it when None); "" if it does not exist."""
    try:
        with path.open(encoding="utf-8", errors="replace") as reader:
            if lines is None:
                return reader.read()
            return "".join(deque(reader, maxlen=lines))
    except FileNotFoundError:
        return ""
