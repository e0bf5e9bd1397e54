"""Rollouts under steady load, with the real CLI, real replicas and real HTTP.

A background client calls the deployment the whole time; every answer (or failure) is recorded with
the version that served it.
"""

import time
from pathlib import Path

import pytest
import yaml

from tests.support.bentoml_cli import VERSIONED_SOURCE, BentomlCli, write_project
from tests.support.load import Load, steady_load, wait_for
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[BentomlCli, dict[str, str]]:
    """Bentos ver:<v1>, ver:<v2>, a v3 that crashes when served and a v4 whose API always fails;
    returns the CLI and their tags."""
    root = tmp_path_factory.mktemp("versions")
    cli = BentomlCli(home=root / "bentoml-home")
    tags = {}
    broken = "raise RuntimeError('broken on purpose')"
    for version, crash, fail in (
        ("1", "pass", ""),
        ("2", "pass", ""),
        ("3", broken, ""),
        ("4", "pass", broken),
    ):
        source = VERSIONED_SOURCE.format(version=version, crash=crash, fail=fail)
        tags[version] = cli.build(write_project(root / f"v{version}", source, "Ver"))
    return cli, tags


def config_file(tmp_path: Path, tag: str, strategy: str) -> Path:
    config = {
        "name": "ver",
        "bento": tag,
        "services": {
            "Ver": {
                "scaling": {"min_replicas": 2, "max_replicas": 2},
                "deployment_strategy": strategy,
                "cold_start_timeout": 15,
            }
        },
    }
    path = tmp_path / f"ver-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def deploy(server: TiffinServer, cli: BentomlCli, tmp_path: Path, tag: str, strategy: str) -> str:
    cli.login(server.endpoint, server.token)
    cli.run("deploy", "-f", str(config_file(tmp_path, tag, strategy)), "--timeout", str(TIMEOUT_S))
    url: str = server.client().get("/api/v2/deployments/ver").json()["urls"][0]
    return url


def update(cli: BentomlCli, tmp_path: Path, tag: str, strategy: str) -> None:
    cli.run("deployment", "update", "ver", "-f", str(config_file(tmp_path, tag, strategy)))


def replicas(server: TiffinServer) -> list[tuple[str, str, str]]:
    items = server.client().get("/api/v2/deployments/ver/replicas").json()["items"]
    return [(r["revision"][:6], r["state"], r["reason"][:80]) for r in items]


def status(server: TiffinServer) -> dict[str, str]:
    body = server.client().get("/api/v2/deployments/ver").json()
    return {"status": body["status"], "message": body["status_message"]}


def events(server: TiffinServer) -> list[dict[str, str]]:
    items: list[dict[str, str]] = server.client().get("/api/v2/deployments/ver/events").json()["items"]
    return items


def only_version(load: Load, version: str, count: int = 20) -> bool:
    served = load.versions()
    return len(served) >= count and set(served[-count:]) == {version}


def roll_v1_to_v2(
    server: TiffinServer, versions: tuple[BentomlCli, dict[str, str]], tmp_path: Path, strategy: str
) -> list[str]:
    """Deploy version 1, update to version 2 under steady load; returns the versions served, in order."""
    cli, tags = versions
    url = deploy(server, cli, tmp_path, tags["1"], strategy)
    with steady_load(url) as load:
        wait_for(lambda: only_version(load, "1"), "version 1 to serve")
        update(cli, tmp_path, tags["2"], strategy)
        wait_for(
            lambda: only_version(load, "2") and status(server)["status"] == "running",
            "version 2 only",
            describe=lambda: f"{status(server)} {replicas(server)} last={load.results[-3:]}",
        )
    assert not load.failures, load.failures[:5]
    return load.versions()


def test_rolling_update_serves_without_failures_and_overlaps_versions(
    tiffin: TiffinServer, versions: tuple[BentomlCli, dict[str, str]], tmp_path: Path
) -> None:
    served = roll_v1_to_v2(tiffin, versions, tmp_path, "RollingUpdate")
    assert "1" in served[served.index("2") :], "both versions answered during the rollout"


def test_a_broken_revision_leaves_the_old_one_serving_until_rollback(
    tiffin: TiffinServer, versions: tuple[BentomlCli, dict[str, str]], tmp_path: Path
) -> None:
    cli, tags = versions
    url = deploy(tiffin, cli, tmp_path, tags["1"], "RollingUpdate")
    with steady_load(url) as load:
        wait_for(lambda: only_version(load, "1"), "version 1 to serve")
        update(cli, tmp_path, tags["3"], "RollingUpdate")
        wait_for(
            lambda: status(tiffin)["message"].startswith("Rollout stuck"),
            "the rollout to be reported stuck",
            describe=lambda: f"{status(tiffin)} {replicas(tiffin)}",
        )
        assert status(tiffin)["status"] == "unhealthy"
        history = cli.tiffin("revisions", "ver").stdout.splitlines()[1:]
        cli.tiffin("rollback", "ver", history[1].split()[0])
        wait_for(lambda: status(tiffin)["status"] == "running", "the rolled-back deployment to run")
        count = len(load.results)
        wait_for(lambda: len(load.results) > count + 20, "more traffic after the rollback")
    assert not load.failures, load.failures[:5]
    assert set(load.versions()) == {"1"}
    timeline = cli.tiffin("events", "ver", "--limit", "1000").stdout
    for said in ("Rolling Service Ver out to revision", "failed:", "Rollout stuck", "admin rolled back to"):
        assert said in timeline, timeline


def test_best_effort_rolls_back_by_itself_when_the_new_revision_answers_with_errors(
    tiffin: TiffinServer, versions: tuple[BentomlCli, dict[str, str]], tmp_path: Path
) -> None:
    cli, tags = versions
    url = deploy(tiffin, cli, tmp_path, tags["1"], "BestEffortControlledRollout")
    with steady_load(url) as load:
        wait_for(lambda: only_version(load, "1"), "version 1 to serve")
        update(cli, tmp_path, tags["4"], "BestEffortControlledRollout")
        wait_for(
            lambda: any(e["kind"] == "rollback" for e in events(tiffin)),
            "an automatic rollback",
            describe=lambda: f"{status(tiffin)} {replicas(tiffin)}",
        )
        wait_for(
            lambda: only_version(load, "1") and status(tiffin)["status"] == "running",
            "version 1 only, running",
            describe=lambda: f"{status(tiffin)} {replicas(tiffin)}",
        )
    rollback = next(e["message"] for e in events(tiffin) if e["kind"] == "rollback")
    assert "rolled back automatically" in rollback and "with errors" in rollback, rollback
    newest = tiffin.client().get("/api/v2/deployments/ver/revisions").json()["items"][0]
    assert newest["bento"] == tags["1"] and newest["active"]
    assert load.failures and {status for status, _ in load.failures} == {"500"}, "only v4's own errors"


def test_recreate_never_serves_the_old_version_after_the_new_one_and_holds_requests_in_the_gap(
    tiffin: TiffinServer, versions: tuple[BentomlCli, dict[str, str]], tmp_path: Path
) -> None:
    served = roll_v1_to_v2(tiffin, versions, tmp_path, "Recreate")
    assert "1" not in served[served.index("2") :], "no old answer once the new version has answered"
