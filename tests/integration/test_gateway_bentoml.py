"""A real bentoml Service behind the gateway, called the way users call deployments.

`bentoml.SyncHTTPClient` polls `/readyz`, fetches `/schema.json` and posts to absolute paths, so it
only works if the deployment's URL serves the Service at its root; a browser gets the Swagger UI at
`/`. The replica's whole process tree (its worker runs in a session of its own) is collected while it
runs and must be gone after the test.
"""

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import bentoml
import httpx
import psutil
import pytest

from tests.support.server import free_port
from tiffin.gateway import Gateway
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute

pytestmark = pytest.mark.integration

STARTUP_DEADLINE_S = 60.0

SERVICE = """
from typing import AsyncGenerator

import bentoml


@bentoml.service(workers=1)
class Echo:
    @bentoml.api
    async def echo(self, text: str) -> dict:
        return {"text": text, "length": len(text)}

    @bentoml.api
    async def count(self, n: int) -> AsyncGenerator[str, None]:
        for i in range(n):
            yield f"{i};"
"""

T = TypeVar("T")
TOKENS = {"good": frozenset({"protected_endpoint:echo"})}


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    seen: dict[int, psutil.Process]


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


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    """A real bentoml HTTP server; every process of its tree is stopped, and checked gone, afterwards."""
    (tmp_path / "service.py").write_text(SERVICE)
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTO_CLOUD_")}
    env.update(BENTOML_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"), BENTOML_DO_NOT_TRACK="True")
    port = free_port()
    command = [sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server", "service:Echo"]
    command += ["--working-dir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "replica.log"
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
    assert len(seen) >= 2, "the supervisor's worker was never seen"
    assert [proc.pid for proc in seen.values() if proc.is_running()] == []


class GatewayThread:
    """The gateway on an event loop of its own thread, so blocking clients can call it from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.gateway = self._run(self._make())

    async def _make(self) -> Gateway:
        async def check(token: str) -> frozenset[str] | None:
            return TOKENS.get(token)

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


@pytest.fixture
def gateway() -> Iterator[GatewayThread]:
    thread = GatewayThread()
    yield thread
    thread.close()


def deployment(replica: Replica, protected: bool = False) -> DeploymentRoute:
    service = ServiceRoute("Echo", free_port(), (replica.url,))
    return DeploymentRoute("echo", free_port(), "Echo", {"Echo": service}, protected=protected)


def test_bentoml_client_calls_the_service_through_the_gateway(
    replica: Replica, gateway: GatewayThread
) -> None:
    route = deployment(replica)
    gateway.apply(RoutingSnapshot({"echo": route}))
    url = f"http://127.0.0.1:{route.port}"

    with bentoml.SyncHTTPClient(url) as client:
        assert client.echo(text="héllo") == {"text": "héllo", "length": 5}
        assert "".join(client.count(n=5)) == "0;1;2;3;4;"


def test_swagger_ui_at_the_root_of_the_deployment_url(replica: Replica, gateway: GatewayThread) -> None:
    route = deployment(replica)
    gateway.apply(RoutingSnapshot({"echo": route}))

    response = httpx.get(f"http://127.0.0.1:{route.port}/", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger" in response.text.lower()


def test_protected_deployment_with_the_bentoml_client(replica: Replica, gateway: GatewayThread) -> None:
    route = deployment(replica, protected=True)
    gateway.apply(RoutingSnapshot({"echo": route}))
    url = f"http://127.0.0.1:{route.port}"

    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 401
    with bentoml.SyncHTTPClient(url, token="good") as client:
        assert client.echo(text="x") == {"text": "x", "length": 1}
