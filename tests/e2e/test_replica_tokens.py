"""A rollout must not cut the old revision's replicas off: each revision has its own replica token.

The caller bento calls a protected deployment through `bentoml.depends(deployment=...)`, which looks
the deployment up in Tiffin's API and sends the replica's BENTO_CLOUD_API_KEY as a bearer token through
the gateway. While v1 and v2 of the caller both serve during a RollingUpdate, every call must succeed;
once v1's replicas are gone, v1's token no longer authenticates.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.bentoml_cli import VERSIONED_SOURCE, BentomlCli, write_project
from tests.support.load import Load, steady_load, wait_for
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e
DEPLOY_TIMEOUT_S = 240
# Answers "<its version>:<the protected deployment's version>"; `key` shows the token it was given.
CALLER_SOURCE = """
import os

import bentoml

VERSION = "{version}"


@bentoml.service
class Caller:
    remote = bentoml.depends(deployment="guarded")

    @bentoml.api
    def version(self) -> str:
        return VERSION + ":" + self.remote.to_sync.version()

    @bentoml.api
    def key(self) -> str:
        return os.environ["BENTO_CLOUD_API_KEY"]
"""


def config_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / f"{config['name']}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def guarded_config(tag: str) -> dict[str, Any]:
    scaling = {"min_replicas": 1, "max_replicas": 1}
    return {
        "name": "guarded",
        "bento": tag,
        "access_authorization": True,
        "services": {"Ver": {"scaling": scaling}},
    }


def caller_config(tag: str) -> dict[str, Any]:
    service = {"scaling": {"min_replicas": 2, "max_replicas": 2}, "deployment_strategy": "RollingUpdate"}
    return {"name": "caller", "bento": tag, "services": {"Caller": service}}


def build_bentos(cli: BentomlCli, root: Path) -> dict[str, str]:
    """The protected bento (answers "g") and callers v1 and v2; returns their tags."""
    guarded = VERSIONED_SOURCE.format(version="g", crash="pass", fail="")
    tags = {"guarded": cli.build(write_project(root / "guarded", guarded, "Ver"))}
    for version in ("1", "2"):
        source = CALLER_SOURCE.format(version=version)
        tags[version] = cli.build(write_project(root / f"caller-v{version}", source, "Caller"))
    return tags


def deployment(server: TiffinServer, name: str) -> dict[str, Any]:
    body: dict[str, Any] = server.client().get(f"/api/v2/deployments/{name}").json()
    return body


def replica_key(url: str) -> str:
    response = httpx.post(f"{url}/key", json={}, timeout=30)
    response.raise_for_status()
    return response.text.strip('"')


def authenticates(server: TiffinServer, token: str) -> bool:
    status = server.client(token).get("/api/v1/auth/current").status_code
    assert status in (200, 401), status
    return status == 200


def only(load: Load, answer: str, count: int = 20) -> bool:
    served = load.versions()
    return len(served) >= count and set(served[-count:]) == {answer}


def describe(server: TiffinServer, load: Load) -> Callable[[], str]:
    def text() -> str:
        body = deployment(server, "caller")
        items = server.client().get("/api/v2/deployments/caller/replicas").json()["items"]
        states = [(r["revision"][:6], r["state"], r["reason"][:80]) for r in items]
        return f"{body['status']} {body['status_message']!r} {states} last={load.results[-3:]}"

    return text


def test_a_rolling_update_keeps_both_revisions_calling_a_protected_deployment(
    tiffin: TiffinServer, bentoml_cli: Callable[[str], BentomlCli], tmp_path: Path
) -> None:
    cli = bentoml_cli("tokens")
    tags = build_bentos(cli, tmp_path / "projects")
    cli.login(tiffin.endpoint, tiffin.token)
    for config in (guarded_config(tags["guarded"]), caller_config(tags["1"])):
        cli.run("deploy", "-f", str(config_file(tmp_path, config)), "--timeout", str(DEPLOY_TIMEOUT_S))
    url = deployment(tiffin, "caller")["urls"][0]
    v1_key = replica_key(url)

    with steady_load(url) as load:
        wait_for(lambda: only(load, "1:g"), "caller v1 to serve", describe=describe(tiffin, load))
        update = config_file(tmp_path, caller_config(tags["2"]))
        cli.run("deployment", "update", "caller", "-f", str(update))
        wait_for(
            lambda: only(load, "2:g") and deployment(tiffin, "caller")["status"] == "running",
            "caller v2 only",
            describe=describe(tiffin, load),
        )

    served = load.versions()
    assert not load.failures, load.failures[:5]
    assert "1:g" in served[served.index("2:g") :], "both revisions answered during the rollout"
    v2_key = replica_key(url)
    assert v2_key != v1_key and authenticates(tiffin, v2_key)
    wait_for(lambda: not authenticates(tiffin, v1_key), "v1's token to be revoked", timeout=60)
