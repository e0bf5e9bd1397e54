"""A real `tiffin up` in a subprocess on a free loopback port, stopped (and reaped) by its owner."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

STARTUP_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


PORTS_PER_HOME = 100  # deployment URLs and internal routes of one server's deployments
_PORT_BLOCKS_START = 20000  # below Linux's ephemeral range (32768-60999), where replicas bind
_PORTS_PER_WORKER = 4000
_port_blocks: dict[Path, tuple[int, int]] = {}


def deployment_ports(home: Path) -> tuple[int, int]:
    """A range of deployment ports for the server on `home` that no other test server uses, even in
    another xdist worker; a restarted server on the same home gets the same range back."""
    if home not in _port_blocks:
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
        offset = (len(_port_blocks) * PORTS_PER_HOME) % _PORTS_PER_WORKER
        first = _PORT_BLOCKS_START + worker * _PORTS_PER_WORKER + offset
        _port_blocks[home] = (first, first + PORTS_PER_HOME - 1)
    return _port_blocks[home]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TiffinServer:
    home: Path
    token: str
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TiffinServer":
        first, last = deployment_ports(self.home)
        env = {
            **os.environ,
            "TIFFIN_HOME": str(self.home),
            "TIFFIN_BOOTSTRAP_TOKEN": self.token,
            "TIFFIN_DEPLOYMENT_PORTS": f"{first}-{last}",
        }
        env.update(self.extra_env)
        self.log_path = self.home.parent / f"tiffin-{self.port}-{time.monotonic_ns()}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tiffin", "up", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"tiffin up exited early:\n{self.output()}")
            if self._answers():
                return
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"tiffin up did not answer within {STARTUP_DEADLINE_S} s:\n{self.output()}")

    def _answers(self) -> bool:
        try:
            response = httpx.get(
                self.endpoint + "/api/v1/auth/current", headers={"X-YATAI-API-TOKEN": self.token}, timeout=2
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send `sig` and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the server (replicas survive it, by design)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def teardown(self) -> None:
        """Stop the server gracefully if it runs, then kill any replica process left under its home."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop(signal.SIGINT)
        kill_processes_under(self.home)

    def replica_processes(self) -> list[psutil.Process]:
        return processes_under(self.home)

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.endpoint, headers={"X-YATAI-API-TOKEN": token or self.token}, timeout=30
        )


def processes_under(home: Path) -> list[psutil.Process]:
    """Processes whose command line names a path inside `home` (replica shims and servers)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(home) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def kill_processes_under(home: Path) -> None:
    victims = processes_under(home)
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(victims, timeout=10)
