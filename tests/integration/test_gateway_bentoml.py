"""A real bentoml Service behind the gateway, called the way users call deployments.

`bentoml.SyncHTTPClient` polls `/readyz`, fetches `/schema.json` and posts to absolute paths, so it
only works if the deployment's URL serves the Service at its root; a browser gets the Swagger UI at
`/`. The replica's whole process tree (its worker runs in a session of its own) is collected while it
runs and must be gone after the test.
"""

from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest

from tests.support.bentoml_replica import GatewayThread, Replica, bentoml_replica
from tests.support.server import free_port
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute

pytestmark = pytest.mark.integration

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

TOKENS = {"good": frozenset({"protected_endpoint:echo"})}


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    """A real bentoml HTTP server; every process of its tree is stopped, and checked gone, afterwards."""
    with bentoml_replica(tmp_path, SERVICE, "Echo") as running:
        yield running
    assert len(running.seen) >= 2, "the supervisor's worker was never seen"


@pytest.fixture
def gateway() -> Iterator[GatewayThread]:
    thread = GatewayThread(TOKENS)
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
