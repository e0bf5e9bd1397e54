"""A real bentoml Service started the way a replica runs, and a gateway on a thread of its own: what the
integration tests of the gateway put together. Every process of the replica's tree (its worker runs in
a session of its own) is collected while it runs, stopped afterwards, and checked gone."""

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from tests.support.server import free_port
from tiffin.gateway import Gateway
from tiffin.routing.snapshot import RoutingSnapshot

STARTUP_DEADLINE_S = 60.0
T = TypeVar("T")


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    seen: dict[int, psutil.Process]


@contextmanager
def bentoml_replica(directory: Path, source: str, service: str) -> Iterator[Replica]:
    """`source` as `service.py` in `directory`, served by bentoml's single-Service server."""
    (directory / "service.py").write_text(source)
    for name in ("home", "tmp"):
        (directory / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTO_CLOUD_")}
    env.update(
        BENTOML_HOME=str(directory / "home"), TMPDIR=str(directory / "tmp"), BENTOML_DO_NOT_TRACK="True"
    )
    port = free_port()
    command = [sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server", f"service:{service}"]
    command += ["--working-dir", str(directory), "--host", "127.0.0.1", "--port", str(port)]
    log = directory / "replica.log"
    seen: dict[int, psutil.Process] = {}
    stop = threading.Event()
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    watcher = threading.Thread(target=_watch, args=(process.pid, seen, stop), daemon=True)
    watcher.start()
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process, log)
        _collect(process.pid, seen)
        yield Replica(url, process, seen)
    finally:
        stop.set()
        watcher.join()
        _collect(process.pid, seen)
        _stop_all(seen)
        process.wait(timeout=10)
    assert [proc.pid for proc in seen.values() if proc.is_running()] == []


def _collect(root_pid: int, seen: dict[int, psutil.Process]) -> None:
    with suppress(psutil.NoSuchProcess):
        root = psutil.Process(root_pid)
        for proc in [root, *root.children(recursive=True)]:
            seen.setdefault(proc.pid, proc)


def _watch(root_pid: int, seen: dict[int, psutil.Process], stop: threading.Event) -> None:
    while not stop.is_set():
        _collect(root_pid, seen)
        stop.wait(0.1)


def _stop_all(seen: dict[int, psutil.Process]) -> None:
    alive = [proc for proc in seen.values() if proc.is_running()]
    for proc in alive:
        with suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, left = psutil.wait_procs(alive, timeout=10)
    for proc in left:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(left, timeout=10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the bentoml replica exited early:\n{log.read_text()}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"the bentoml replica did not become ready:\n{log.read_text()}")


class GatewayThread:
    """The gateway on an event loop of its own thread, so blocking clients can call it from the test."""

    def __init__(self, tokens: Mapping[str, frozenset[str]] | None = None) -> None:
        self._tokens = dict(tokens or {})
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.gateway = self._run(self._make())

    async def _make(self) -> Gateway:
        async def check(token: str) -> frozenset[str] | None:
            return self._tokens.get(token)

        return Gateway("127.0.0.1", check)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def apply(self, snapshot: RoutingSnapshot) -> None:
        self._run(self.gateway.apply(snapshot))

    def close(self) -> None:
        self._run(self.gateway.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
