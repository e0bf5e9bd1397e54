"""Tiffin as separate processes on PostgreSQL: the API, two controllers (one leads), two gateways.

The real bentoml CLI deploys through `tiffin api`; calls reach the deployment through either gateway;
killing the leading controller hands the lead to the standby, which adopts the running replicas and
rolls the next update out.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.bentoml_cli import TWO_SERVICE_SOURCE, BentomlCli, write_project
from tests.support.cluster import Cluster, wait_until
from tests.support.server import deployment_ports, free_port

pytestmark = pytest.mark.e2e
TOKEN = "tfn_test_scale_out"
GATEWAYS = ("127.0.0.2", "127.0.0.3")
DEPLOY_TIMEOUT_S = 240


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
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
        "TIFFIN_GATEWAY_HOST": GATEWAYS[0],
    }
    processes = Cluster(home, env)
    try:
        api = processes.start("api", "api", "--port", str(api_port))
        api.wait_for_output("Application startup complete")
        yield processes, f"http://127.0.0.1:{api_port}"
    finally:
        processes.stop()


def call(host: str, port: int, text: str) -> httpx.Response:
    return httpx.post(f"http://{host}:{port}/shout", json={"text": text}, timeout=30)


def served_by_both(port: int, text: str) -> bool:
    try:
        answers = [call(host, port, text) for host in GATEWAYS]
    except httpx.HTTPError:
        return False
    return all(a.status_code == 200 and a.json()["inner"]["upper"] == text.upper() for a in answers)


def test_two_gateways_serve_and_a_standby_controller_takes_over(
    cluster: tuple[Cluster, str], bentoml_cli: Callable[[str], BentomlCli], tmp_path: Path
) -> None:
    processes, endpoint = cluster
    leader = processes.start("controller-1", "controller")
    leader.wait_for_output("Leading")
    standby = processes.start("controller-2", "controller")
    standby.wait_for_output("Standing by")
    for host in GATEWAYS:
        processes.start(f"gateway-{host}", "gateway", "--host", host)
    cli = bentoml_cli("scale-out")
    tag = cli.build(write_project(tmp_path / "project", TWO_SERVICE_SOURCE, "Front"))
    cli.login(endpoint, TOKEN)

    cli.run("deploy", "-f", str(config(tmp_path, tag, "one")), "--timeout", str(DEPLOY_TIMEOUT_S))
    port = deployment_port(endpoint)
    wait_until(lambda: served_by_both(port, "hi"), "both gateways to serve the deployment")

    leader.kill()
    standby.wait_for_output("Leading")
    cli.run("deployment", "update", "-f", str(config(tmp_path, tag, "two")))
    wait_until(lambda: answered_by(port, "two"), "the update to serve", DEPLOY_TIMEOUT_S)

    assert served_by_both(port, "again")
    assert "Leading" in standby.output() and "Standing by" in standby.output()


def answered_by(port: int, marker: str) -> bool:
    """Whether both gateways reach replicas of the revision whose GLOBAL_ENV is `marker`."""
    try:
        answers = [call(host, port, "x").json() for host in GATEWAYS]
    except (httpx.HTTPError, ValueError):
        return False
    return all(a.get("env", {}).get("GLOBAL_ENV") == marker for a in answers)


def config(tmp_path: Path, tag: str, marker: str) -> Path:
    document: dict[str, Any] = {
        "name": "duo",
        "bento": tag,
        "envs": [{"name": "GLOBAL_ENV", "value": marker}],
        "services": {
            "Front": {"scaling": {"min_replicas": 1, "max_replicas": 1}},
            "Model": {"scaling": {"min_replicas": 1, "max_replicas": 1}},
        },
    }
    path = tmp_path / f"duo-{marker}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def deployment_port(endpoint: str) -> int:
    with httpx.Client(base_url=endpoint, headers={"X-YATAI-API-TOKEN": TOKEN}, timeout=30) as client:
        url: str = client.get("/api/v2/deployments/duo").json()["urls"][0]
    return int(url.rsplit(":", 1)[1].rstrip("/"))
