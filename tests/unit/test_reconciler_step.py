"""A whole reconcile step against the real store, a FakeBackend and a stub builder: no processes.

The API writes desired state; each `step()` must move the backend and write statuses and replica
records back, and publish routes with only ready replicas.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tiffin.backends.fake import FakeBackend
from tiffin.backends.protocol import ReplicaPhase
from tiffin.builder import BuildFailed, BuildRequest, BuiltBento
from tiffin.core.errors import Unauthorized
from tiffin.reconciler.loop import Reconciler, ReconcilerDeps
from tiffin.routing.snapshot import RoutingSnapshot
from tiffin.routing.traffic import QueueStats, Traffic
from tiffin.store.tokens import authenticate

if TYPE_CHECKING:
    from tests.unit.conftest import Api

DEPLOYMENTS = "/api/v2/deployments"


class StubBuilder:
    def __init__(self, root: Path, fail: bool = False) -> None:
        self.root, self.fail, self.requests = root, fail, []  # type: ignore[var-annotated]

    def build(self, request: BuildRequest) -> BuiltBento:
        self.requests.append(request)
        if self.fail:
            raise BuildFailed(
                "Installing the bento's Python requirements failed (exit 1).", "no such package"
            )
        return BuiltBento(self.root, Path("/usr/bin/python3"), "key", self.root / "build.log")

    def read_log(self, bento_tag: str, tail: int | None = None) -> str:
        return ""


class Harness:
    def __init__(self, api: Api, builder: StubBuilder, backend: FakeBackend | None = None) -> None:
        context = api.client.app.state.context  # type: ignore[attr-defined]
        self.api, self.backend = api, backend or FakeBackend()
        self.now = 0.0
        deps = ReconcilerDeps(
            db=context.db,
            backend=self.backend,
            builder=builder,
            artifacts=context.artifacts,  # type: ignore[arg-type]
            secrets=context.secrets,
            box=context.box,
            catalog=context.instance_types,
            api_endpoint="http://127.0.0.1:3000",
            clock=context.clock,
            ports=context.ports,
        )
        self.reconciler = Reconciler(deps, monotonic=lambda: self.now)

    def step_until(self, condition: Any, what: str) -> RoutingSnapshot:
        """Step (builds run on a thread pool) until `condition(snapshot)` holds, with a deadline."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            snapshot = self.reconciler.step()
            if condition(snapshot):
                return snapshot
            time.sleep(0.01)
        raise AssertionError(f"never reached: {what}")

    def status(self, name: str = "d1") -> str:
        return str(self.api.ok("GET", f"{DEPLOYMENTS}/{name}")["status"])


@pytest.fixture
def harness(api: Api, tmp_path: Path) -> Harness:
    api.push("bento", "echo", "v1")
    body = {
        "bento": "echo:v1",
        "name": "d1",
        "services": {"echo": {"scaling": {"min_replicas": 2, "max_replicas": 2}}},
    }
    api.ok("POST", DEPLOYMENTS, json=body)
    return Harness(api, StubBuilder(tmp_path))


def test_a_deployment_goes_from_building_to_running(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    assert harness.status() == "deploying"
    spec = harness.backend.specs[harness.backend.started[0]]
    assert spec.env["BENTO_CLOUD_API_ENDPOINT"] == "http://127.0.0.1:3000"
    assert spec.env["BENTO_CLOUD_API_KEY"] and spec.env["YATAI_BENTO_DEPLOYMENT_NAME"] == "d1"

    for replica_id in harness.backend.started:
        harness.backend.set_ready(replica_id)
    snapshot = harness.step_until(
        lambda s: len(s.deployments["d1"].services["echo"].endpoints) == 2, "routes"
    )
    assert harness.status() == "running"
    body = harness.api.ok("GET", f"{DEPLOYMENTS}/d1/replicas")
    assert sorted(r["state"] for r in body["items"]) == ["running", "running"]
    assert body["services"] == {
        "echo": {"replicas": 2, "ready": 2, "waiting": 0, "min_replicas": 2, "max_replicas": 2}
    }
    assert snapshot.deployments["d1"].entry_service == "echo"


def test_terminate_stops_every_replica_then_reports_terminated(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    harness.api.ok("POST", f"{DEPLOYMENTS}/d1/terminate")
    harness.step_until(lambda _: len(harness.backend.stopped) == 2, "both stopped")
    assert harness.status() == "terminating"
    harness.backend.finish_stopping()
    harness.step_until(lambda _: harness.status() == "terminated", "terminated")


def test_a_failed_build_fails_the_deployment_with_the_log_tail(api: Api, tmp_path: Path) -> None:
    api.push("bento", "echo", "v1")
    api.ok("POST", DEPLOYMENTS, json={"bento": "echo:v1", "name": "d1"})
    harness = Harness(api, StubBuilder(tmp_path, fail=True))
    harness.step_until(lambda _: harness.status() == "image-build-failed", "build failure")
    body = api.ok("GET", f"{DEPLOYMENTS}/d1")
    assert "no such package" in body["status_message"] and not harness.backend.started


def test_a_crashed_replica_is_replaced_after_its_backoff(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    harness.backend.crash(harness.backend.started[0], "OOMKilled")
    harness.reconciler.step()
    assert len(harness.backend.started) == 2
    harness.now += 1.0
    harness.step_until(lambda _: len(harness.backend.started) == 3, "a replacement")
    records = harness.api.ok("GET", f"{DEPLOYMENTS}/d1/replicas")["items"]
    assert {r["restarts"] for r in records} == {1} and any(r["reason"] == "OOMKilled" for r in records)


def test_restart_counts_and_reasons_survive_a_new_reconciler(harness: Harness, tmp_path: Path) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    harness.backend.crash(harness.backend.started[0], "OOMKilled")
    harness.reconciler.step()

    harness.backend.forget(harness.backend.started[0])
    harness.backend.set_ready(harness.backend.started[1])
    new_tiffin = Harness(harness.api, StubBuilder(tmp_path), harness.backend)  # only the store remembers
    new_tiffin.reconciler.step()

    records = harness.api.ok("GET", f"{DEPLOYMENTS}/d1/replicas")["items"]
    assert {r["restarts"] for r in records} == {1}
    assert all(r["reason"] == "OOMKilled" for r in records), records


def test_deleting_a_deployment_stops_its_replicas(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    harness.api.ok("DELETE", f"{DEPLOYMENTS}/d1")
    snapshot = harness.step_until(lambda _: len(harness.backend.stopped) == 2, "both stopped")
    assert "d1" not in snapshot.deployments
    assert not harness.backend.of(ReplicaPhase.STARTING)


def test_a_replica_that_never_gets_ready_is_stopped_after_the_cold_start_timeout(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    first = harness.backend.started[0]
    harness.backend.set_ready(harness.backend.started[1])
    harness.reconciler.step()  # first seen starting now
    harness.now += 119.0
    harness.reconciler.step()
    assert first not in harness.backend.stopped
    harness.now += 2.0
    harness.reconciler.step()
    assert first in harness.backend.stopped, "overdue: stopped, not left starting forever"
    records = {r["replica"]: r for r in harness.api.ok("GET", f"{DEPLOYMENTS}/d1/replicas")["items"]}
    assert "not ready after 120 s" in records[first]["reason"]
    harness.backend.finish_stopping()
    harness.now += 1.0
    harness.step_until(lambda _: len(harness.backend.started) == 3, "a replacement")


def test_what_a_starting_replica_reports_is_in_the_status_and_its_failure(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    first, second = harness.backend.started
    harness.backend.set_ready(second)
    harness.backend.report_error(first, "RuntimeError: broken on purpose")
    harness.reconciler.step()

    deployment = harness.api.ok("GET", f"{DEPLOYMENTS}/d1")
    assert deployment["status"] == "deploying"
    assert "A starting replica reports: RuntimeError: broken on purpose" in deployment["status_message"]

    harness.now += 121.0
    harness.reconciler.step()
    failure = "not ready after 120 s (cold start timeout): RuntimeError: broken on purpose"
    records = {r["replica"]: r for r in harness.api.ok("GET", f"{DEPLOYMENTS}/d1/replicas")["items"]}
    assert records[first]["reason"] == failure
    assert any(failure in e["message"] for e in events(harness) if e["kind"] == "replica")


def events(harness: Harness, query: str = "") -> list[dict[str, str]]:
    items: list[dict[str, str]] = harness.api.ok("GET", f"{DEPLOYMENTS}/d1/events{query}")["items"]
    return items


def test_the_events_timeline_tells_what_happened_in_order(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    first, second = harness.backend.started
    for replica_id in (first, second):
        harness.backend.set_ready(replica_id)
    harness.step_until(lambda _: harness.status() == "running", "running")
    harness.backend.crash(first, "OOMKilled")
    harness.reconciler.step()
    harness.api.ok("POST", f"{DEPLOYMENTS}/d1/terminate")
    harness.reconciler.step()
    harness.now += 1.0
    harness.step_until(lambda _: second in harness.backend.stopped, "drained and stopped")

    timeline = events(harness)
    said = [f"{e['kind']}: {e['message']}" for e in timeline]
    expected_in_order = [
        "revision: Revision",
        f"replica: Replica {first} started",
        f"replica: Replica {first} is ready.",
        "status: Status deploying → running.",
        f"replica: Replica {first} failed: OOMKilled.",
        "lifecycle: admin terminated the deployment",
        f"replica: Replica {second} drains and stops: no longer deployed.",
    ]
    positions = [next(i for i, line in enumerate(said) if line.startswith(e)) for e in expected_in_order]
    assert positions == sorted(positions), said
    assert "admin created the deployment" in timeline[0]["message"]
    assert [e["time"] for e in timeline] == sorted(e["time"] for e in timeline)
    assert {e["service"] for e in timeline if e["kind"] == "replica"} == {"echo"}
    assert events(harness, "?limit=2") == timeline[-2:]
    assert events(harness, "?service=echo") == [e for e in timeline if e["service"] == "echo"]


def test_events_of_an_unknown_deployment_or_with_a_bad_limit_are_refused(harness: Harness) -> None:
    harness.api.fails(404, "GET", f"{DEPLOYMENTS}/nope/events")
    assert "`limit`" in harness.api.fails(400, "GET", f"{DEPLOYMENTS}/d1/events?limit=lots")["message"]


def test_best_effort_rolls_back_by_itself_with_a_fresh_token_and_says_why(harness: Harness) -> None:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    for replica_id in harness.backend.started:
        harness.backend.set_ready(replica_id)
    harness.step_until(lambda _: harness.status() == "running", "running")
    token_before = _key(harness, harness.backend.started[0])
    _update_to_v2(harness, "BestEffortControlledRollout")
    harness.step_until(lambda _: len(harness.backend.started) == 3, "one new replica")
    failed_token = _key(harness, harness.backend.started[2])
    harness.backend.crash(harness.backend.started[2], "exited with code 1")
    harness.step_until(lambda _: len(_revisions(harness)) == 3, "an automatic rollback revision")

    newest, failed, original = _revisions(harness)
    assert newest["bento"] == original["bento"] == "echo:v1" and failed["bento"] == "echo:v2"
    harness.step_until(
        lambda _: not _authenticates(harness, failed_token), "the failed revision's token gone"
    )
    assert _authenticates(harness, token_before), "the original replicas still serve with their token"
    _advance(harness, lambda: len(harness.backend.started) > 3, "replicas of the rollback revision")
    (token_after,) = {_key(harness, r) for r in harness.backend.started[3:]}
    assert token_after not in (token_before, failed_token), "the rollback revision has its own token"
    rollbacks = [e["message"] for e in events(harness) if e["kind"] == "rollback"]
    assert (
        len(rollbacks) == 1 and f"rolled back automatically to revision {failed['uid']}" not in rollbacks[0]
    )
    assert f"to revision {original['uid']}" in rollbacks[0] and "exited with code 1" in rollbacks[0]


def _revisions(harness: Harness) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = harness.api.ok("GET", f"{DEPLOYMENTS}/d1/revisions")["items"]
    return items


def _upload(api: Api, repo: str, version: str) -> None:
    one = f"/api/v1/bento_repositories/{repo}/bentos/{version}"
    api.ok("PATCH", f"{one}/start_upload")
    headers = {"Content-Type": "application/octet-stream"}
    api.ok("PUT", f"{one}/upload", content=api.artifact_tar("bento", repo, version), headers=headers)


def test_min_zero_is_scaled_to_zero_until_a_waiting_request_wakes_it(api: Api, tmp_path: Path) -> None:
    api.push("bento", "echo", "v1")
    scaling = {"min_replicas": 0, "max_replicas": 2}
    api.ok(
        "POST",
        DEPLOYMENTS,
        json={"bento": "echo:v1", "name": "d1", "services": {"echo": {"scaling": scaling}}},
    )
    harness = Harness(api, StubBuilder(tmp_path))
    harness.step_until(lambda _: harness.status() == "scaled-to-zero", "scaled-to-zero")
    assert harness.backend.started == []

    waiting = Traffic({}, {("d1", "echo"): QueueStats(waiting=3, oldest_wait_s=0.1)})
    harness.reconciler.step(waiting)

    assert len(harness.backend.started) == 1, "woken at once, without waiting for an evaluation"
    assert harness.api.ok("GET", f"{DEPLOYMENTS}/d1/replicas")["services"]["echo"]["waiting"] == 3
    assert any("0 → 1 replicas" in e["message"] for e in events(harness) if e["kind"] == "scaling")


# --- replica tokens: one per revision, revoked once the revision is replaced and its replicas are gone --


def _key(harness: Harness, replica_id: str) -> str:
    """The BENTO_CLOUD_API_KEY the replica was started with."""
    return harness.backend.specs[replica_id].env["BENTO_CLOUD_API_KEY"]


def _authenticates(harness: Harness, secret: str) -> bool:
    context = harness.api.client.app.state.context  # type: ignore[attr-defined]
    try:
        with context.db.session() as session:
            authenticate(session, secret, context.clock.now())
    except Unauthorized:
        return False
    return True


def _update_to_v2(harness: Harness, strategy: str) -> None:
    harness.api.register_version("bento", "echo", "v2")
    _upload(harness.api, "echo", "v2")
    services = {"echo": {"deployment_strategy": strategy, "scaling": {"min_replicas": 2, "max_replicas": 2}}}
    harness.api.ok("PUT", f"{DEPLOYMENTS}/d1", json={"bento": "echo:v2", "services": services})


def _advance(harness: Harness, condition: Any, what: str) -> None:
    """Step a second at a time, every starting replica getting ready, until `condition()` holds."""
    for _ in range(30):
        harness.now += 1.0
        for replica_id in harness.backend.of(ReplicaPhase.STARTING):
            harness.backend.set_ready(replica_id)
        harness.reconciler.step()
        if condition():
            return
    raise AssertionError(f"never reached: {what}")


def _running_v1(harness: Harness) -> list[str]:
    harness.step_until(lambda _: len(harness.backend.started) == 2, "two replicas started")
    _advance(harness, lambda: harness.status() == "running", "running")
    return list(harness.backend.started)


def _stopped(harness: Harness, replicas: list[str]) -> bool:
    return all(r in harness.backend.stopped for r in replicas)


def test_replicas_of_two_revisions_hold_their_own_tokens_until_the_old_ones_are_gone(
    harness: Harness,
) -> None:
    old = _running_v1(harness)
    _update_to_v2(harness, "RollingUpdate")
    harness.step_until(lambda _: len(harness.backend.started) == 3, "a first v2 replica")
    old_token, new_token = _key(harness, old[0]), _key(harness, harness.backend.started[2])
    assert _key(harness, old[1]) == old_token != new_token
    assert _authenticates(harness, old_token) and _authenticates(harness, new_token)

    _advance(harness, lambda: any(r in harness.backend.stopped for r in old), "a v1 replica stopped")
    harness.backend.finish_stopping()
    harness.reconciler.step()
    assert _authenticates(harness, old_token), "the other v1 replica still serves"
    _advance(harness, lambda: _stopped(harness, old), "both v1 replicas stopping")
    harness.reconciler.step()
    assert _authenticates(harness, old_token), "a stopping v1 replica may still finish its requests"

    harness.backend.finish_stopping()
    harness.reconciler.step()
    assert not _authenticates(harness, old_token), "no v1 replica is left"
    new = harness.backend.started[2:]
    assert len(new) == 2 and {_key(harness, r) for r in new} == {new_token}
    assert _authenticates(harness, new_token)
    assert any("replica token" in e["message"] and "revoked" in e["message"] for e in events(harness))


def test_a_new_tiffin_keeps_giving_each_revisions_replicas_their_own_token(
    harness: Harness, tmp_path: Path
) -> None:
    old = _running_v1(harness)
    _update_to_v2(harness, "RollingUpdate")
    harness.step_until(lambda _: len(harness.backend.started) == 3, "a first v2 replica")
    old_token, new_token = _key(harness, old[0]), _key(harness, harness.backend.started[2])

    restarted = Harness(harness.api, StubBuilder(tmp_path), harness.backend)  # same store, adopted replicas
    restarted.step_until(lambda _: True, "one step")
    assert _authenticates(harness, old_token) and _authenticates(harness, new_token)
    restarted.backend.crash(harness.backend.started[2], "OOMKilled")
    restarted.reconciler.step()
    restarted.now += 1.0
    restarted.step_until(lambda _: len(harness.backend.started) == 4, "the crashed v2 replica replaced")
    assert _key(harness, harness.backend.started[3]) == new_token
    assert _authenticates(harness, old_token), "the v1 replicas still serve"

    _advance(restarted, lambda: _stopped(harness, old), "both v1 replicas stopping")
    harness.backend.finish_stopping()
    restarted.reconciler.step()
    assert not _authenticates(harness, old_token) and _authenticates(harness, new_token)
    assert {_key(harness, r) for r in harness.backend.started[3:]} == {new_token}


def test_deleting_a_deployment_revokes_every_revisions_token_at_once(harness: Harness) -> None:
    old = _running_v1(harness)
    _update_to_v2(harness, "RollingUpdate")
    harness.step_until(lambda _: len(harness.backend.started) == 3, "a first v2 replica")
    tokens = [_key(harness, old[0]), _key(harness, harness.backend.started[2])]

    harness.api.ok("DELETE", f"{DEPLOYMENTS}/d1")

    assert not any(_authenticates(harness, token) for token in tokens)
    assert not [t for t in harness.api.rows("api_tokens") if t["name"].startswith("replica:")]


def test_terminate_keeps_the_current_revisions_token_for_restore(harness: Harness) -> None:
    token = _key(harness, _running_v1(harness)[0])
    harness.api.ok("POST", f"{DEPLOYMENTS}/d1/terminate")
    _advance(harness, lambda: len(harness.backend.stopped) == 2, "both replicas stopping")
    harness.backend.finish_stopping()
    harness.step_until(lambda _: harness.status() == "terminated", "terminated")
    assert _authenticates(harness, token)

    harness.api.ok("POST", f"{DEPLOYMENTS}/d1/restore")
    harness.step_until(lambda _: len(harness.backend.started) == 4, "restored replicas")
    assert {_key(harness, r) for r in harness.backend.started[2:]} == {token}
