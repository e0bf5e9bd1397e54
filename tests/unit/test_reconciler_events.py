"""The reconciler's timeline entries, computed from two consecutive views of the same deployment."""

from tiffin.backends.protocol import BentoRef, ReplicaPhase, ReplicaSpec, ReplicaStatus
from tiffin.reconciler.events import Happened, View, action_events, changes, status_change, view_of
from tiffin.reconciler.plan import DesiredService, Drain, Stop
from tiffin.reconciler.status import Status
from tiffin.store.events import Kind

P = ReplicaPhase
TEMPLATE = ReplicaSpec("", "d1", "svc", "rev2", BentoRef("svc:v2"))


def replica(replica_id: str, phase: ReplicaPhase, revision: str = "rev2", reason: str = "") -> ReplicaStatus:
    return ReplicaStatus(replica_id, "d1", "svc", revision, phase, reason=reason)


def desired(replicas: int = 2, revision: str = "rev2") -> DesiredService:
    return DesiredService("d1", "svc", revision, replicas, TEMPLATE, "RollingUpdate")


def messages(happened: list[Happened], kind: Kind | None = None) -> list[str]:
    return [h.event.message for h in happened if kind is None or h.event.kind is kind]


def step(
    before: View | None, observed: list[ReplicaStatus], wanted: DesiredService
) -> tuple[View, list[str]]:
    after = view_of([wanted], observed, before)
    return after, messages(changes(before, after, {wanted.key: wanted.strategy}))


def test_the_first_view_reports_only_adopted_replicas() -> None:
    _, said = step(None, [replica("a", P.RUNNING), replica("b", P.FAILED)], desired())
    assert said == ["Replica a adopted after a Tiffin start (running)."]


def test_a_replica_life_is_started_ready_failed_and_a_stopped_one_says_so() -> None:
    view, _ = step(None, [], desired())
    view, said = step(view, [replica("a", P.STARTING)], desired())
    assert said == ["Replica a started (revision rev2)."]
    view, said = step(view, [replica("a", P.RUNNING)], desired())
    assert said == ["Replica a is ready."]
    view, said = step(view, [replica("a", P.FAILED, reason="OOMKilled"), replica("b", P.RUNNING)], desired())
    assert said == [
        "Replica a failed: OOMKilled.",
        "Replica b started (revision rev2).",
        "Replica b is ready.",
    ]
    view, said = step(view, [replica("b", P.STOPPING)], desired())
    assert said == [], "a forgotten failed replica did not 'stop'; a Stop action says why b stops"
    _, said = step(view, [], desired())
    assert said == ["Replica b stopped."]


def test_a_pending_replica_says_why_it_waits() -> None:
    view, _ = step(None, [], desired())
    _, said = step(view, [replica("a", P.PENDING, reason="needs 4 CPUs, 2 free")], desired())
    assert said == ["Replica a is pending: needs 4 CPUs, 2 free."]


def test_a_rollout_starts_with_old_replicas_and_completes_only_when_new_ones_are_ready() -> None:
    view, _ = step(None, [replica("old", P.RUNNING, "rev1")], desired(1))
    assert view.rolling == {("d1", "svc"): "rev2"}
    view, said = step(view, [], desired(1))  # Recreate-like gap: old gone, new not started yet
    assert view.rolling and "Replica old stopped." in said
    view, _ = step(view, [replica("new", P.STARTING)], desired(1))
    assert view.rolling
    view, said = step(view, [replica("new", P.RUNNING)], desired(1))
    assert not view.rolling
    assert "Service svc runs revision rev2 only: rollout complete." in said


def test_the_start_of_a_rollout_names_the_revision_and_strategy() -> None:
    view, _ = step(None, [replica("old", P.RUNNING, "rev1")], desired(1, "rev1"))
    _, said = step(view, [replica("old", P.RUNNING, "rev1")], desired(1))
    assert said == ["Rolling Service svc out to revision rev2 (RollingUpdate)."]


def test_a_rollout_superseded_by_another_revision_did_not_finish() -> None:
    old = [replica("old", P.RUNNING, "rev1")]
    view, _ = step(None, old, desired(1))
    _, said = step(view, old, desired(1, "rev3"))
    assert said == [
        "Rolling Service svc out to revision rev3 (RollingUpdate).",
        "Rollout of Service svc to revision rev2 ended before it finished.",
    ]


def test_no_rollout_while_the_new_revision_cannot_start_yet() -> None:
    building = DesiredService("d1", "svc", "rev2", 1, None)
    assert view_of([building], [replica("old", P.RUNNING, "rev1")], None).rolling == {}


def test_removals_say_whether_the_replica_drains_and_why() -> None:
    seen = {"a": replica("a", P.RUNNING), "b": replica("b", P.STARTING)}
    actions = [Drain("a", "scaled down"), Stop("b", "no longer deployed"), Stop("gone", "x")]
    assert messages(action_events(actions, seen)) == [
        "Replica a drains and stops: scaled down.",
        "Replica b stops: no longer deployed.",
    ]


def test_a_status_change_names_both_statuses_and_the_reason() -> None:
    happened = status_change("d1", Status("deploying"), Status("unhealthy", "Rollout stuck: x"))
    assert happened.event.message == "Status deploying → unhealthy: Rollout stuck: x"
    assert status_change("d1", Status("deploying"), Status("running")).event.message == (
        "Status deploying → running."
    )
