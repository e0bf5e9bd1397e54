"""The replica set answers which replicas of a Service, revision and phase a step observed."""

from tiffin.backends.protocol import ReplicaPhase as P
from tiffin.backends.protocol import ReplicaStatus
from tiffin.reconciler.plan import DesiredService, Drain, Forget, RestartBook, Stop, plan
from tiffin.reconciler.replica_set import LIVE, ReplicaSet


def replica(
    replica_id: str, phase: P, service: str = "Svc", revision: str = "r1", deployment: str = "d1"
) -> ReplicaStatus:
    return ReplicaStatus(replica_id, deployment, service, revision, phase)


OBSERVED = ReplicaSet(
    [
        replica("a", P.RUNNING),
        replica("b", P.STARTING),
        replica("c", P.RUNNING, revision="r0"),
        replica("d", P.FAILED),
        replica("e", P.RUNNING, service="Other"),
        replica("f", P.PENDING, deployment="d2"),
    ]
)


def test_a_service_and_its_revisions() -> None:
    mine = OBSERVED.of("d1", "Svc")

    assert [r.replica_id for r in mine] == ["a", "b", "c", "d"]
    assert mine.of_revision("r1").count(*LIVE) == 2
    assert [r.replica_id for r in mine.other_than("r1").get(P.RUNNING)] == ["c"]
    assert OBSERVED.of("d1").ids() == {"a", "b", "c", "d", "e"}


def test_phases_filter_and_no_phase_means_all() -> None:
    assert OBSERVED.count() == 6
    assert OBSERVED.count(P.RUNNING) == 3
    assert [r.replica_id for r in OBSERVED.get(P.FAILED, P.PENDING)] == ["d", "f"]
    assert not ReplicaSet().of("d1") and len(OBSERVED.of("d2")) == 1


def test_plan_drains_ready_replicas_stops_the_others_and_forgets_the_failed() -> None:
    """Every removal decision is data: a ready replica is drained, one not serving is stopped, a failed
    one is forgotten, unless its processes still run (a missed cold-start deadline): then stopped."""
    desired = DesiredService("d1", "Svc", "r1", 0, None)
    observed = [
        replica("ready", P.RUNNING),
        replica("starting", P.STARTING),
        replica("gone", P.FAILED),
        replica("overdue", P.FAILED),
    ]

    actions, _ = plan([desired], observed, RestartBook(), 0.0, str, still_running={"overdue"})

    kinds = {type(a).__name__: a.replica_id for a in actions if isinstance(a, Drain | Stop | Forget)}
    assert sorted(
        (type(a).__name__, a.replica_id) for a in actions if isinstance(a, Drain | Stop | Forget)
    ) == [
        ("Drain", "ready"),
        ("Forget", "gone"),
        ("Stop", "overdue"),
        ("Stop", "starting"),
    ], kinds
