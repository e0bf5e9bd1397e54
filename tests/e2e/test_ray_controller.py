"""`tiffin controller` with `TIFFIN_RAY_ADDRESS`: replicas run as Ray actors on a worker node.

`tiffin api`, a controller pointed at a Ray cluster on this machine (a head and one worker node, see
`tests.support.ray_cluster`) and a gateway share a PostgreSQL database. The real bentoml CLI deploys a
bento with a model; the worker node downloads both through the API with the `ray-nodes` token, builds
the environment (from the run's shared environment cache) and serves the replica, reached through the
gateway. Terminating the deployment stops the replica and its actor.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.bentoml_cli import BentomlCli
from tests.support.cluster import Cluster, wait_until
from tests.support.ray_cluster import LOOPBACK_ENV, NAMESPACE, ray_cluster
from tests.support.replicas import assert_all_gone, kill_and_check, recorded_trees
from tests.support.server import deployment_ports, free_port

pytestmark = pytest.mark.e2e
TOKEN = "tfn_test_ray_controller"
DEPLOY_TIMEOUT_S = 240


@pytest.fixture
def ray_node(tmp_path: Path) -> Iterator[Any]:
    with ray_cluster([{"num_cpus": 2}], node_env={"TIFFIN_NODE_HOME": str(tmp_path / "node")}) as cluster:
        yield cluster


@pytest.fixture
def processes(postgres_url: str, ray_node: Any, tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    home = tmp_path / "home"
    home.mkdir()
    api_port = free_port()
    first, last = deployment_ports(home)
    env = {
        "TIFFIN_HOME": str(home),
        "TIFFIN_DATABASE_URL": postgres_url,
        "TIFFIN_BOOTSTRAP_TOKEN": TOKEN,
        "TIFFIN_DEPLOYMENT_PORTS": f"{first}-{last}",
        "TIFFIN_API_URL": f"http://127.0.0.1:{api_port}",
        "TIFFIN_RAY_ADDRESS": ray_node.address,
        **LOOPBACK_ENV,
    }
    started = Cluster(home, env)
    try:
        started.start("api", "api", "--port", str(api_port)).wait_for_output("Application startup complete")
        yield started, f"http://127.0.0.1:{api_port}"
    finally:
        started.stop()
        _remove_actors()
        leftovers = recorded_trees(tmp_path / "node")
        survivors = kill_and_check(leftovers)
        assert_all_gone(leftovers)
        assert not survivors, f"replica processes survived the test: {survivors}"


def _actors() -> list[str]:
    import ray  # noqa: PLC0415 - optional dependency

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]


def _remove_actors() -> None:
    import ray  # noqa: PLC0415 - optional dependency

    for name in _actors():
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)


def test_the_controller_runs_replicas_as_ray_actors(
    processes: tuple[Cluster, str], built_bento: tuple[BentomlCli, str, str], tmp_path: Path
) -> None:
    started, endpoint = processes
    controller = started.start("controller", "controller")
    controller.wait_for_output("Leading")
    started.start("gateway", "gateway")
    cli, bento_tag, _ = built_bento
    cli.login(endpoint, TOKEN)

    cli.run("deploy", bento_tag, "-n", "ray-echo", "--timeout", str(DEPLOY_TIMEOUT_S))

    port = _deployment_port(endpoint)
    wait_until(lambda: _echoes(port), "the deployment to answer through the gateway")
    (replica,) = _actors()
    assert replica.startswith("ray-echo-")
    assert (tmp_path / "node" / "replicas" / replica).is_dir(), "the replica runs under the node's home"
    assert "ray-nodes" in cli.run("api-token", "list").stdout

    cli.run("deployment", "terminate", "ray-echo")
    wait_until(lambda: not _actors(), "the replica's actor to go", 60)
    assert not (tmp_path / "node" / "replicas" / replica).exists()


def _echoes(port: int) -> bool:
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/echo", json={"text": "hi"}, timeout=10)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200 and answer.text == "hi"


def _deployment_port(endpoint: str) -> int:
    with httpx.Client(base_url=endpoint, headers={"X-YATAI-API-TOKEN": TOKEN}, timeout=30) as client:
        url: str = client.get("/api/v2/deployments/ray-echo").json()["urls"][0]
    return int(url.rsplit(":", 1)[1].rstrip("/"))
