"""The processes of a scaled-out Tiffin (`tiffin api`, `controller`, `gateway`), started and stopped by
their owner; each writes its output to a log file the test can wait on."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import STOP_DEADLINE_S, kill_processes_under

DEADLINE_S = 60.0


@dataclass
class TiffinProcess:
    name: str
    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[str] | None = None

    def start(self) -> "TiffinProcess":
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tiffin", *self.args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        return self

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_for_output(self, text: str, timeout: float = DEADLINE_S) -> None:
        wait_until(lambda: text in self.output(), f"{self.name} to say {text!r}", timeout, self.output)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGINT) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Cluster:
    """Processes sharing one store and one TIFFIN_HOME (one machine); `stop()` ends them and every
    replica they left."""

    home: Path
    env: dict[str, str]
    processes: list[TiffinProcess] = field(default_factory=list)

    def start(self, name: str, *args: str) -> TiffinProcess:
        log = self.home.parent / f"{name}-{time.monotonic_ns()}.log"
        process = TiffinProcess(name, list(args), self.env, log).start()
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        kill_processes_under(self.home)


def wait_until(
    check: Callable[[], object], what: str, timeout: float = DEADLINE_S, describe: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}: {describe()}")
