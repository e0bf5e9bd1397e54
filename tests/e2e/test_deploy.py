"""`bentoml deploy` against a real `tiffin up`: a two-Service bento runs as real replicas behind its URL.

Covers per-Service scaling, env precedence, config_overrides, dependency routing, the SDK client,
protection, updates, terminate/delete (no process left), a failing build and an invalid config.
"""

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.support.bentoml_cli import TWO_SERVICE_SOURCE, BentomlCli, write_project
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e
DEPLOY_TIMEOUT_S = 240
CALLER_SOURCE = """
import bentoml


@bentoml.service
class Caller:
    remote = bentoml.depends(deployment="locked")

    @bentoml.api
    def relay(self, text: str) -> dict:
        return self.remote.to_sync.shout(text=text)
"""
BROKEN_SOURCE = """
import bentoml


@bentoml.service
class Broken:
    @bentoml.api
    def f(self) -> str:
        return "x"
"""


@pytest.fixture(scope="module")
def two_service_bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[BentomlCli, str]:
    root = tmp_path_factory.mktemp("two-service")
    cli = BentomlCli(home=root / "bentoml-home")
    project = write_project(root / "project", TWO_SERVICE_SOURCE, "Front")
    cli.run("build", cwd=project)
    return cli, cli.python("import bentoml; print(bentoml.bentos.list('front')[0].tag)")


@pytest.fixture
def deployer(tiffin: TiffinServer, two_service_bento: tuple[BentomlCli, str]) -> tuple[BentomlCli, str]:
    cli, tag = two_service_bento
    cli.login(tiffin.endpoint, tiffin.token)
    return cli, tag


def config_file(tmp_path: Path, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "envs": [{"name": "GLOBAL_ENV", "value": "g"}, {"name": "SHARED", "value": "global"}],
        "services": {
            "Front": {
                "scaling": {"min_replicas": 1, "max_replicas": 2},
                "envs": [{"name": "SHARED", "value": "front"}],
            },
            "Model": {
                "scaling": {"min_replicas": 2, "max_replicas": 3},
                "envs": [{"name": "SVC_ENV", "value": "model"}],
                "config_overrides": {"traffic": {"timeout": 42}},
            },
        },
        **overrides,
    }
    path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def deployment(server: TiffinServer, name: str) -> dict[str, Any]:
    response = server.client().get(f"/api/v2/deployments/{name}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def replicas(server: TiffinServer, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = server.client().get(f"/api/v2/deployments/{name}/replicas").json()["items"]
    return items


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def shout(url: str, text: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/shout", json={"text": text}, headers=headers, timeout=30)


def running_pids(server: TiffinServer, name: str, service: str | None = None) -> set[int]:
    return {
        r["pid"]
        for r in replicas(server, name)
        if r["state"] == "running" and service in (None, r["service"])
    }


def test_two_service_deployment_end_to_end(
    tiffin: TiffinServer, deployer: tuple[BentomlCli, str], tmp_path: Path
) -> None:
    cli, tag = deployer
    cli.run(
        "deploy", "-f", str(config_file(tmp_path, bento=tag, name="duo")), "--timeout", str(DEPLOY_TIMEOUT_S)
    )
    body = deployment(tiffin, "duo")
    assert body["status"] == "running" and len(body["urls"]) == 1
    url = body["urls"][0]

    counts = {
        s: sum(r["service"] == s and r["state"] == "running" for r in replicas(tiffin, "duo"))
        for s in ("Front", "Model")
    }
    assert counts == {"Front": 1, "Model": 2}

    answer = shout(url, "hi").json()
    assert answer["inner"]["upper"] == "HI"
    assert answer["env"] == {"GLOBAL_ENV": "g", "SHARED": "front", "SVC_ENV": None, "SECRET_TOKEN": None}
    assert answer["inner"]["env"]["SHARED"] == "global" and answer["inner"]["env"]["SVC_ENV"] == "model"
    assert answer["inner"]["timeout"] == 42 and answer["timeout"] != 42
    services, replica_table = cli.tiffin("replicas", "duo").stdout.split("\n\n")
    assert replica_table.count("Model") == 2 and replica_table.count("Front") == 1
    assert replica_table.count("running") == 3
    assert [line.split()[:3] for line in services.splitlines()[1:]] == [
        ["Front", "1", "1"],
        ["Model", "2", "2"],
    ]
    assert "==> build <==" in cli.tiffin("logs", "duo").stdout
    model_logs = cli.tiffin("logs", "duo", "--service", "Model", "--tail", "100").stdout
    assert model_logs.count("==> duo-model-") == 2 and "==> duo-front-" not in model_logs

    model_homes = {shout(url, "x").json()["inner"]["home"] for _ in range(12)}
    assert len(model_homes) == 2, "calls to Model are balanced over both of its replicas"

    sdk = cli.python(
        "import bentoml, json; c = bentoml.deployment.get('duo').get_client();"
        " print(json.dumps(c.shout(text='sdk')))"
    )
    assert json.loads(sdk.splitlines()[-1])["inner"]["upper"] == "SDK"

    old_pids = running_pids(tiffin, "duo")
    cli.run(
        "deployment",
        "update",
        "duo",
        "-f",
        str(config_file(tmp_path, bento=tag, name="duo", envs=[{"name": "GLOBAL_ENV", "value": "g2"}])),
    )
    wait_for(
        lambda: _global_env(url) == "g2",
        "replicas carrying the new env",
        DEPLOY_TIMEOUT_S,
    )
    wait_for(
        lambda: deployment(tiffin, "duo")["status"] == "running", "the update to finish", DEPLOY_TIMEOUT_S
    )
    assert not old_pids & running_pids(tiffin, "duo")

    history = cli.tiffin("revisions", "duo").stdout.splitlines()[1:]
    assert len(history) == 2 and history[0].startswith("*")
    cli.tiffin("rollback", "duo", history[1].split()[0])
    wait_for(lambda: _global_env(url) == "g", "the rolled-back env", DEPLOY_TIMEOUT_S)

    tree = _process_trees(running_pids(tiffin, "duo"))
    cli.run("deployment", "terminate", "duo", "--wait")
    assert deployment(tiffin, "duo")["status"] == "terminated"
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert shout(url, "gone").status_code == 503
    cli.tiffin("restore", "duo")
    wait_for(lambda: _global_env(url) == "g", "the restored deployment to serve", DEPLOY_TIMEOUT_S)
    cli.run("deployment", "terminate", "duo", "--wait")

    cli.run("deployment", "delete", "duo")
    assert tiffin.client().get("/api/v2/deployments/duo").status_code == 404


def test_protected_deployment_needs_a_bearer_token(
    tiffin: TiffinServer, deployer: tuple[BentomlCli, str], tmp_path: Path
) -> None:
    cli, tag = deployer
    cli.run(
        "deploy",
        "-f",
        str(config_file(tmp_path, bento=tag, name="locked", access_authorization=True)),
        "--timeout",
        str(DEPLOY_TIMEOUT_S),
    )
    url = deployment(tiffin, "locked")["urls"][0]
    client = tiffin.client()
    other = client.post(
        "/api/v1/api_tokens", json={"name": "other", "scopes": ["protected_endpoint:elsewhere"]}
    ).json()["token"]
    mine = client.post(
        "/api/v1/api_tokens", json={"name": "mine", "scopes": ["protected_endpoint:locked"]}
    ).json()["token"]

    assert shout(url, "a").status_code == 401
    assert shout(url, "a", token=other).status_code == 403
    assert shout(url, "a", token=mine).json()["inner"]["upper"] == "A"

    caller = write_project(tmp_path / "caller", CALLER_SOURCE, "Caller")
    cli.run("deploy", str(caller), "-n", "caller", "--timeout", str(DEPLOY_TIMEOUT_S), cwd=caller)
    caller_url = deployment(tiffin, "caller")["urls"][0]
    relayed = httpx.post(f"{caller_url}/relay", json={"text": "via"}, timeout=30)
    assert relayed.json()["inner"]["upper"] == "VIA", (
        "depends(deployment=...) reached the protected deployment"
    )


def test_a_bento_whose_requirements_cannot_install_fails_with_its_build_log(
    tiffin: TiffinServer, tmp_path: Path, bentoml_cli: Callable[[str], BentomlCli]
) -> None:
    cli = bentoml_cli("broken")
    cli.login(tiffin.endpoint, tiffin.token)
    project = write_project(
        tmp_path / "broken",
        BROKEN_SOURCE,
        "Broken",
        ("tiffin-no-such-package-anywhere==9.9.9",),
    )
    result = cli.run(
        "deploy", str(project), "-n", "broken", "--timeout", str(DEPLOY_TIMEOUT_S), cwd=project, check=False
    )
    assert result.returncode != 0
    body = deployment(tiffin, "broken")
    assert body["status"] == "image-build-failed"
    assert "tiffin-no-such-package-anywhere" in body["status_message"]
    logs = tiffin.client().get("/api/v2/deployments/broken/logs").text
    assert "tiffin-no-such-package-anywhere" in logs


def test_an_unknown_instance_type_is_refused(tiffin: TiffinServer, deployer: tuple[BentomlCli, str]) -> None:
    cli, tag = deployer
    result = cli.run("deploy", tag, "-n", "huge", "--instance-type", "cpu.9000", check=False)
    assert result.returncode != 0
    assert "instance_type" in result.stdout + result.stderr and "cpu.9000" in result.stdout + result.stderr
    assert tiffin.client().get("/api/v2/deployments/huge").status_code == 404


def test_replicas_survive_a_killed_tiffin_and_are_adopted(
    start_tiffin: Callable[..., TiffinServer], two_service_bento: tuple[BentomlCli, str], tmp_path: Path
) -> None:
    first = start_tiffin()
    cli, tag = two_service_bento
    cli.login(first.endpoint, first.token)
    cli.run(
        "deploy",
        "-f",
        str(config_file(tmp_path, bento=tag, name="sturdy")),
        "--timeout",
        str(DEPLOY_TIMEOUT_S),
    )
    url = deployment(first, "sturdy")["urls"][0]
    before = running_pids(first, "sturdy")
    assert len(before) == 3

    first.kill()
    assert all(psutil.pid_exists(pid) for pid in before)
    second = start_tiffin(home=first.home)
    wait_for(
        lambda: deployment(second, "sturdy")["status"] == "running", "the adopted deployment to be running"
    )
    wait_for(lambda: shout(url, "back").status_code == 200, "traffic to resume")
    assert running_pids(second, "sturdy") == before
    assert len(replicas(second, "sturdy")) == 3

    tree = _process_trees(before)
    assert second.stop(signal.SIGINT) == 0
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], (
        "Ctrl-C stops replicas"
    )


def _global_env(url: str) -> str | None:
    response = shout(url, "u")
    return response.json()["env"]["GLOBAL_ENV"] if response.status_code == 200 else None


def _process_trees(pids: set[int]) -> list[psutil.Process]:
    tree = []
    for pid in pids:
        root = psutil.Process(pid)
        tree += [root, *root.children(recursive=True)]
    assert tree and os.getpid() not in {p.pid for p in tree}
    return tree
