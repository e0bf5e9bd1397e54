"""A Service that cannot start says why: in the status, the events, the logs and Tiffin's own log.

bentoml keeps retrying a Service whose `__init__` raises, so its replica never exits: only its output
and the cold-start deadline tell what is wrong. Each replacement's output stays readable after it ends.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bentoml_cli import VERSIONED_SOURCE, BentomlCli, write_project
from tests.support.load import wait_for
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e
EXCEPTION = "RuntimeError: broken on purpose"
COLD_START_TIMEOUT_S = 8
BROKEN = VERSIONED_SOURCE.format(version="1", crash="raise RuntimeError('broken on purpose')", fail="")
FAILURES_S = 180  # three cold-start timeouts, their backoffs and bentoml's retries, on a slow machine


def test_an_exception_in_init_is_in_the_status_the_events_and_the_logs(
    tiffin: TiffinServer, bentoml_cli: Callable[[str], BentomlCli], tmp_path: Path
) -> None:
    cli = bentoml_cli("broken")
    tag = cli.build(write_project(tmp_path / "project", BROKEN, "Ver"))
    cli.login(tiffin.endpoint, tiffin.token)
    service = {"scaling": {"min_replicas": 1, "max_replicas": 1}, "cold_start_timeout": COLD_START_TIMEOUT_S}
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump({"name": "broken", "bento": tag, "services": {"Ver": service}}))

    cli.run("deployment", "create", "-f", str(config), "--no-wait")

    def get(path: str = "") -> Any:
        return tiffin.client().get(f"/api/v2/deployments/broken{path}").json()

    wait_for(lambda: EXCEPTION in get()["status_message"], "the exception in the status", FAILURES_S)

    def failures() -> list[str]:
        return [e["message"] for e in get("/events")["items"] if " failed: " in e["message"]]

    wait_for(lambda: bool(failures()), "a replica failure in the events", FAILURES_S)
    assert f"(cold start timeout): {EXCEPTION}" in failures()[0]
    wait_for(lambda: get()["status"] == "unhealthy", "unhealthy after repeated failures", FAILURES_S)
    assert EXCEPTION in get()["status_message"]

    logs = cli.tiffin("logs", "broken").stdout
    ended = [line for line in logs.splitlines() if line.startswith("==> ") and "(ended: " in line]
    assert ended, logs
    assert logs.count(EXCEPTION) >= 2, "the ended replicas' output and the live one's"
    assert f"[broken/Ver] Replica {ended[0].split()[1]} failed" in tiffin.output()
