"""Autoscaling, scale-to-zero and the request queue with the real CLI, SDK, replicas and HTTP.

One `tiffin up` with a 1 s evaluation period and a 3 s stabilization window (settings, so the test
does not wait out BentoCloud's 15 s and 300 s) serves every test; each test deploys its own Service
from one bento.
"""

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.bentoml_cli import TWO_SERVICE_SOURCE, BentomlCli, write_project
from tests.support.load import wait_for
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e
TOKEN = "tfn_test_autoscaling"
QUEUE_CAPACITY = 50
SETTLE_S = 90  # scaling down takes the window plus a period; scaling up a cold start or two
CLIENTS = 6  # busy clients: well over 3 x 4 requests/s, the qps target, even on a loaded machine
SOURCE = """
import asyncio

import bentoml


@bentoml.service
class Napper:
    @bentoml.api
    def hello(self) -> str:
        return "hello"

    @bentoml.api
    async def work(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"
"""


class Cloud:
    def __init__(self, server: TiffinServer, cli: BentomlCli, tag: str, root: Path) -> None:
        self.server, self.cli, self.tag, self.root = server, cli, tag, root

    def deploy(self, name: str, scaling: dict[str, Any], **settings: Any) -> str:
        return self.deploy_services(name, self.tag, {"Napper": {"scaling": scaling, **settings}})

    def deploy_services(self, name: str, tag: str, services: dict[str, Any]) -> str:
        config = {"name": name, "bento": tag, "services": services}
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self.cli.run("deploy", "-f", str(path), "--timeout", "240")
        url: str = self.get(name)["urls"][0]
        return url

    def get(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.server.client().get(f"/api/v2/deployments/{name}").json()
        return body

    def running(self, name: str) -> int:
        items = self.server.client().get(f"/api/v2/deployments/{name}/replicas").json()["items"]
        return sum(r["state"] == "running" for r in items)

    def events(self, name: str, kind: str) -> list[str]:
        items = self.server.client().get(f"/api/v2/deployments/{name}/events?limit=1000").json()["items"]
        return [e["message"] for e in items if e["kind"] == kind]

    def scaled_to_zero(self, name: str) -> bool:
        return self.get(name)["status"] == "scaled-to-zero" and self.running(name) == 0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("autoscaling")
    settings = {
        "TIFFIN_AUTOSCALE_PERIOD_S": "1",
        "TIFFIN_AUTOSCALE_WINDOW_S": "3",
        "TIFFIN_QUEUE_CAPACITY": str(QUEUE_CAPACITY),
    }
    server = TiffinServer(home=root / "tiffin-home", token=TOKEN, extra_env=settings)
    try:
        server.start()
        cli = BentomlCli(home=root / "bentoml-home")
        tag = cli.build(write_project(root / "project", SOURCE, "Napper"))
        cli.login(server.endpoint, server.token)
        yield Cloud(server, cli, tag, root)
    finally:
        server.teardown()


def burst(url: str, count: int, seconds: float) -> list[httpx.Response]:
    """`count` requests to /work at once, each on its own connection."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=120) as client:
            return client.post(f"{url}/work", json={"seconds": seconds})

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_an_idle_service_scales_to_zero_and_the_first_request_wakes_it(cloud: Cloud) -> None:
    url = cloud.deploy("napper", {"min_replicas": 0, "max_replicas": 2}, cold_start_timeout=60)
    wait_for(lambda: cloud.scaled_to_zero("napper"), "scaled-to-zero", SETTLE_S)

    first = httpx.post(f"{url}/hello", json={}, timeout=90)

    assert (first.status_code, first.text) == (200, "hello")
    wait_for(lambda: cloud.scaled_to_zero("napper"), "scaled-to-zero again", SETTLE_S)
    answer = cloud.cli.python(
        "import bentoml\nprint(bentoml.deployment.get('napper').get_client().hello())\n"
    )
    assert answer.strip().splitlines()[-1] == "hello", "get_client() and its /readyz wake it too"
    scaling = cloud.events("napper", "scaling")
    assert (
        sum("0 → 1 replicas" in m for m in scaling) >= 2 and sum("1 → 0 replicas" in m for m in scaling) >= 1
    )


def test_a_burst_at_zero_is_queued_under_max_concurrency_and_a_full_queue_answers_429(cloud: Cloud) -> None:
    overrides = {"traffic": {"max_concurrency": 4, "concurrency": 4, "timeout": 60}}
    url = cloud.deploy(
        "burst", {"min_replicas": 0, "max_replicas": 2}, cold_start_timeout=60, config_overrides=overrides
    )
    wait_for(lambda: cloud.scaled_to_zero("burst"), "scaled-to-zero", SETTLE_S)

    answers = burst(url, 40, 0.5)

    assert [r.status_code for r in answers] == [200] * 40
    overflow = burst(url, 2 * 4 + QUEUE_CAPACITY + 20, 2.0)
    statuses = sorted({r.status_code for r in overflow})
    assert statuses == [200, 429], [
        (r.status_code, r.text[:200]) for r in overflow if r.status_code not in (200, 429)
    ]
    refused = next(r for r in overflow if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "retry later" in refused.json()["message"]


def test_a_request_past_traffic_timeout_gets_a_504(cloud: Cloud) -> None:
    url = cloud.deploy(
        "hasty", {"min_replicas": 1, "max_replicas": 1}, config_overrides={"traffic": {"timeout": 2}}
    )

    started = time.monotonic()
    slow = httpx.post(f"{url}/work", json={"seconds": 10}, timeout=30)

    assert slow.status_code == 504 and time.monotonic() - started < 9
    # The gateway and the replica both enforce the same timeout; on a loaded machine the replica's own
    # 504 ({"error": "Not able to process the request in 2 seconds"}) can win the race.
    answer = slow.json()
    assert "traffic.timeout" in answer.get("message", "") or "in 2 seconds" in answer.get("error", ""), answer
    assert httpx.post(f"{url}/hello", json={}, timeout=30).status_code == 200


def test_qps_load_scales_up_to_max_and_back_down(cloud: Cloud) -> None:
    policy = {"metrics": [{"type": "qps", "value": "4"}], "scale_down_behavior": "fast"}  # a quantity
    url = cloud.deploy("busy", {"min_replicas": 1, "max_replicas": 3, "policy": policy})

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        deadline = time.monotonic() + SETTLE_S

        def hammer(_: int) -> int:
            served = 0
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < deadline and cloud.running("busy") < 3:
                    served += client.post(f"{url}/work", json={"seconds": 0.05}).status_code == 200
            return served

        assert sum(pool.map(hammer, range(CLIENTS))) > 0
    assert cloud.running("busy") == 3, cloud.events("busy", "scaling")
    wait_for(lambda: cloud.running("busy") == 1, "back to min_replicas", SETTLE_S)
    scaling = cloud.events("busy", "scaling")
    assert any("→ 3 replicas (qps" in m for m in scaling), scaling


def test_a_request_wakes_a_two_service_app_as_it_flows(cloud: Cloud) -> None:
    tag = cloud.cli.build(write_project(cloud.root / "duo", TWO_SERVICE_SOURCE, "Front"))
    at_zero = {"scaling": {"min_replicas": 0, "max_replicas": 1}, "cold_start_timeout": 60}
    url = cloud.deploy_services("chain", tag, {"Front": at_zero, "Model": at_zero})
    wait_for(lambda: cloud.scaled_to_zero("chain"), "scaled-to-zero", SETTLE_S)

    answer = httpx.post(f"{url}/shout", json={"text": "hi"}, timeout=120)

    assert answer.status_code == 200 and answer.json()["inner"]["upper"] == "HI"
    woken = [m.split(":")[0] for m in cloud.events("chain", "scaling") if "0 → 1 replicas" in m]
    assert sorted(woken) == ["Service Front", "Service Model"], woken
