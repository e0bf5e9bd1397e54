"""Self-healing under steady load, with the real CLI, real replicas and real HTTP.

One deployment (one Service, 2 replicas) is shared by the module. A background client calls it the
whole time; a replica killed with SIGKILL is replaced while the other one serves, and a terminated
deployment refuses traffic with a clear 503, leaves no process behind, and serves again once restored.
"""

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.support.bentoml_cli import BentomlCli, write_project
from tests.support.load import Load, steady_load, wait_for
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e
NAME = "heal"
TOKEN = "tfn_test_self_healing"
DEPLOY_TIMEOUT_S = 240
HEAL_TIMEOUT_S = 60
# One client thread sends one request at a time, so at most one request is in flight on the replica
# when it dies: that one may fail (502). Every later request either finds the dead replica's
# connection refused, which the gateway retries on the other replica, or is routed to the survivor.
MAX_FAILURES_PER_KILL = 1
SHIM_DIED = "died unexpectedly"  # the reason given for a replica whose process tree was killed
SOURCE = """
import bentoml


@bentoml.service
class Ver:
    @bentoml.api
    def version(self) -> str:
        return "1"
"""  # `Load` calls POST /version


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TiffinServer, BentomlCli, str]]:
    """`tiffin up` running deployment `heal` (Service Ver, 2 replicas); returns it, the CLI and the URL."""
    root = tmp_path_factory.mktemp("self-healing")
    server = TiffinServer(home=root / "tiffin-home", token=TOKEN)
    try:
        server.start()
        cli = BentomlCli(home=root / "bentoml-home")
        tag = cli.build(write_project(root / "project", SOURCE, "Ver"))
        cli.login(server.endpoint, server.token)
        cli.run("deploy", "-f", str(_config_file(root, tag)), "--timeout", str(DEPLOY_TIMEOUT_S))
        yield server, cli, _deployment(server)["urls"][0]
    finally:
        server.teardown()


def _config_file(root: Path, tag: str) -> Path:
    service = {"scaling": {"min_replicas": 2, "max_replicas": 2}, "cold_start_timeout": 60}
    path = root / "heal.yaml"
    path.write_text(yaml.safe_dump({"name": NAME, "bento": tag, "services": {"Ver": service}}))
    return path


def _get(server: TiffinServer, path: str = "") -> Any:
    with server.client() as client:
        response = client.get(f"/api/v2/deployments/{NAME}{path}")
    response.raise_for_status()
    return response.json()


def _deployment(server: TiffinServer) -> dict[str, Any]:
    body: dict[str, Any] = _get(server)
    return body


def _replicas(server: TiffinServer) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _get(server, "/replicas")["items"]
    return items


def _running(server: TiffinServer) -> list[dict[str, Any]]:
    return [r for r in _replicas(server) if r["state"] == "running"]


def _serving(load: Load, after: int, count: int = 10) -> bool:
    """`count` answers in a row, all successful, since result number `after`."""
    recent = load.results[after:][-count:]
    return len(recent) == count and all(status == "200" for status, _ in recent)


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def _revision_count(server: TiffinServer) -> int:
    return len(_get(server, "/revisions")["items"])


def test_a_killed_replica_is_replaced_while_the_other_serves(
    deployed: tuple[TiffinServer, BentomlCli, str],
) -> None:
    server, cli, url = deployed
    with steady_load(url) as load:
        wait_for(lambda: len(_running(server)) == 2 and _serving(load, 0), "2 replicas serving")
        before = _running(server)
        victim = before[0]
        tree = _tree(victim["pid"])
        os.kill(victim["pid"], signal.SIGKILL)

        def healed() -> bool:
            running = _running(server)
            return (
                len(running) == 2
                and victim["replica"] not in {r["replica"] for r in running}
                and victim["pid"] not in {r["pid"] for r in running}
            )

        wait_for(healed, "a replacement replica", HEAL_TIMEOUT_S, describe=lambda: str(_replicas(server)))
        mark = len(load.results)
        wait_for(lambda: _serving(load, mark), "traffic after the replacement", HEAL_TIMEOUT_S)
    assert not _alive(tree), "the killed replica left no process behind"
    after = _running(server)
    assert {r["restarts"] for r in after} == {victim["restarts"] + 1}, after
    assert all(SHIM_DIED in r["reason"] and "killed by SIGKILL" in r["reason"] for r in after), after
    assert SHIM_DIED in cli.tiffin("replicas", NAME).stdout
    assert len(load.failures) <= MAX_FAILURES_PER_KILL, load.failures
    assert _deployment(server)["status"] == "running"


def test_terminate_under_load_then_restore(deployed: tuple[TiffinServer, BentomlCli, str]) -> None:
    server, cli, url = deployed
    revisions = _revision_count(server)
    with steady_load(url) as load:
        wait_for(lambda: len(_running(server)) == 2 and _serving(load, 0), "2 replicas serving")
        trees = [p for r in _running(server) for p in _tree(r["pid"])]
        cli.run("deployment", "terminate", NAME)
        wait_for(lambda: _terminated(url), "the URL to answer 503 terminated")
        wait_for(lambda: not _alive(trees), "the replicas to stop", describe=lambda: str(_alive(trees)))
        wait_for(lambda: not server.replica_processes(), "no replica process left")
        assert _deployment(server)["status"] == "terminated"
        assert not _running(server)
        cli.tiffin("restore", NAME)
        mark = len(load.results)
        wait_for(lambda: _serving(load, mark), "traffic after the restore", DEPLOY_TIMEOUT_S)
    wait_for(lambda: _deployment(server)["status"] == "running", "the restored deployment to run")
    assert len(_running(server)) == 2
    assert _revision_count(server) == revisions, "terminate and restore keep the revisions"
    refused = load.failures
    assert refused and all(status == "503" and "terminated" in text for status, text in refused), refused


def _terminated(url: str) -> bool:
    response = httpx.post(f"{url}/version", json={}, timeout=30)
    return response.status_code == 503 and "terminated" in response.json()["message"]
