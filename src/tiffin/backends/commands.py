"""Running one build command with its output streamed into the build log and a time limit.

The runner is a seam: the builder takes any `CommandRunner`, so tests can substitute a fake, and a
real one starts the command in its own session so that a timeout kills everything it spawned.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol


class CommandTimedOut(Exception):
    """The command ran past its time limit and was killed."""


class CommandRunner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        output: IO[bytes],
        timeout_s: float,
    ) -> int:
        """Run `argv`, writing stdout and stderr to `output`; return its exit status.

        Raises `CommandTimedOut` after `timeout_s` seconds, and `OSError` if it cannot start.
        """
        ...


def run_streaming(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: IO[bytes],
    timeout_s: float,
) -> int:
    """The real `CommandRunner`: a child process writing directly to `output`'s file descriptor."""
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as process:
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_session(process)
            raise CommandTimedOut(f"{argv[0]} ran longer than {timeout_s:g} s") from None


def _kill_session(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
