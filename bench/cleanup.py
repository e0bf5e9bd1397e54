"""A scratch folder for one benchmark run, and the guarantee that nothing it started outlives it.

Ctrl-C and SIGTERM note every descendant first (a CLI's own children outlive the CLI, which
`subprocess.run` kills alone) and unwind through the `finally` blocks; at the end, whatever outlived the
servers' own teardown is killed: noted descendants, children, and any process naming a path under the
folder (such as the `uv pip compile` of a `bentoml build` killed mid-way).
"""

import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

import psutil
from tests.support.server import processes_under

_strays: list[psutil.Process] = []


@contextmanager
def scratch() -> Iterator[Path]:
    catch_signals()
    with tempfile.TemporaryDirectory(prefix="tiffin-bench-", ignore_cleanup_errors=True) as tmp:
        try:
            yield Path(tmp)
        finally:
            _kill_strays(Path(tmp))


def catch_signals() -> None:
    """(Re)install the handlers: an asyncio event loop takes them over and leaves the defaults behind."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupted)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    _strays.extend(psutil.Process().children(recursive=True))
    raise KeyboardInterrupt


def _kill_strays(root: Path) -> None:
    found = [*_strays, *psutil.Process().children(recursive=True), *processes_under(root)]
    alive = [p for p in found if p.is_running()]
    for process in alive:
        with suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=10)
