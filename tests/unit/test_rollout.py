"""Rollout strategies, stepped against a FakeBackend with a hand-moved clock.

At every step the number of live and ready replicas must stay within the strategy's bounds, and the
rollout must finish with only new replicas.
"""

import itertools

import pytest

from tiffin.backends.fake import FakeBackend
from tiffin.backends.protocol import BentoRef, ReplicaPhase, ReplicaSpec
from tiffin.reconciler.plan import DesiredService, Drain, RestartBook, RollBack, Start, Stop, plan
from tiffin.reconciler.rollout import budget
from tiffin.reconciler.status import runtime_status
from tiffin.routing.traffic import ReplicaTraffic

LIVE = (ReplicaPhase.PENDING, ReplicaPhase.STARTING, ReplicaPhase.RUNNING)


def desired(revision: str, replicas: int, strategy: str, pause: float = 5.0) -> DesiredService:
    template = ReplicaSpec("", "d1", "Echo", revision, BentoRef("echo:v1"))
    return DesiredService("d1", "Echo", revision, replicas, template, strategy, pause)


class Rollout:
    """Replicas become ready one step after they start, and stop one step after being told to."""

    def __init__(self, replicas: int, strategy: str) -> None:
        self.backend, self.book, self.now = FakeBackend(), RestartBook(), 0.0
        self.replicas, self.strategy = replicas, strategy
        self._ids = itertools.count()
        self.history: list[tuple[int, int, int, int]] = []  # (old live, new live, old ready, new ready)
        self.actions: list[object] = []
        self.settle("rev1")

    def settle(self, revision: str, steps: int = 200, step_s: float = 1.0) -> None:
        for _ in range(steps):
            self.step(revision)
            self.now += step_s
            if self.done(revision):
                return
        raise AssertionError(f"the rollout to {revision} did not finish")

    def step(self, revision: str) -> None:
        self.backend.finish_stopping()
        for replica_id in self.backend.of(ReplicaPhase.STARTING):
            self.backend.set_ready(replica_id)
        wanted = desired(revision, self.replicas, self.strategy)
        actions, self.book = plan([wanted], self.backend.observe(), self.book, self.now, self._new_id)
        self.actions += actions
        for action in actions:
            if isinstance(action, Start):
                self.backend.start(action.spec)
            elif isinstance(action, Stop | Drain):
                self.backend.stop(action.replica_id)
        self.history.append(self.counts(revision))

    def counts(self, revision: str) -> tuple[int, int, int, int]:
        replicas = self.backend.observe()
        old = [r for r in replicas if r.revision != revision]
        new = [r for r in replicas if r.revision == revision]
        return (
            sum(r.phase in LIVE for r in old),
            sum(r.phase in LIVE for r in new),
            sum(r.phase is ReplicaPhase.RUNNING for r in old),
            sum(r.phase is ReplicaPhase.RUNNING for r in new),
        )

    def done(self, revision: str) -> bool:
        old_live, _, _, new_ready = self.counts(revision)
        return old_live == 0 and new_ready == self.replicas

    def _new_id(self, service: DesiredService) -> str:
        return f"{service.revision}-{next(self._ids)}"


@pytest.mark.parametrize("replicas", [1, 2, 4, 5, 10])
@pytest.mark.parametrize("strategy", ["RollingUpdate", "RampedSlowRollout", "BestEffortControlledRollout"])
def test_rolling_strategies_stay_within_their_bounds(strategy: str, replicas: int) -> None:
    rollout = Rollout(replicas, strategy)
    rollout.history.clear()
    rollout.settle("rev2")
    bounds = budget(strategy, replicas)
    for old_live, new_live, old_ready, new_ready in rollout.history:
        assert old_live + new_live <= replicas + bounds.max_surge
        assert old_ready + new_ready >= replicas - bounds.max_unavailable


@pytest.mark.parametrize(
    ("strategy", "replicas", "surge", "unavailable"),
    [
        ("RollingUpdate", 1, 1, 0),
        ("RollingUpdate", 4, 1, 1),
        ("RollingUpdate", 10, 3, 2),
        ("RampedSlowRollout", 10, 1, 0),
        ("BestEffortControlledRollout", 4, 0, 1),
        ("BestEffortControlledRollout", 10, 0, 2),
    ],
)
def test_budgets(strategy: str, replicas: int, surge: int, unavailable: int) -> None:
    bounds = budget(strategy, replicas)
    assert (bounds.max_surge, bounds.max_unavailable) == (surge, unavailable)


def test_rolling_update_starts_new_replicas_before_draining_old_ones() -> None:
    rollout = Rollout(1, "RollingUpdate")
    rollout.history.clear()
    rollout.settle("rev2")
    assert rollout.history[0] == (1, 1, 1, 0), "a new replica is started while the old one serves"
    assert all(old_ready + new_ready >= 1 for _, _, old_ready, new_ready in rollout.history)


@pytest.mark.parametrize("replicas", [1, 3])
def test_recreate_never_runs_two_revisions_at_once(replicas: int) -> None:
    rollout = Rollout(replicas, "Recreate")
    rollout.history.clear()
    rollout.settle("rev2")
    assert all(not (old_live and new_live) for old_live, new_live, _, _ in rollout.history)


def test_ramped_rollout_pauses_between_replicas() -> None:
    rollout = Rollout(3, "RampedSlowRollout")
    rollout.actions.clear()
    started_at: list[float] = []
    for _ in range(100):
        before = len(rollout.backend.started)
        rollout.step("rev2")
        started_at += [rollout.now] * (len(rollout.backend.started) - before)
        rollout.now += 0.5
        if rollout.done("rev2"):
            break
    gaps = [b - a for a, b in itertools.pairwise(started_at)]
    assert len(started_at) == 3 and all(gap >= 5.0 for gap in gaps), started_at


def test_best_effort_rolls_back_when_a_new_replica_fails() -> None:
    rollout = Rollout(2, "BestEffortControlledRollout")
    rollout.step("rev2")
    new = [r for r in rollout.backend.started if r.startswith("rev2")]
    assert new
    rollout.backend.crash(new[0], "ImportError: no module named broken")
    actions, _ = plan(
        [desired("rev2", 2, "BestEffortControlledRollout")], rollout.backend.observe(), rollout.book, 0, str
    )
    rollbacks = [a for a in actions if isinstance(a, RollBack)]
    assert rollbacks and "ImportError" in rollbacks[0].reason and rollbacks[0].to_revision == "rev1"


def test_best_effort_rolls_back_even_when_no_old_replica_is_left() -> None:
    rollout = Rollout(1, "BestEffortControlledRollout")  # surge 0, unavailable 1: the old one goes first
    while not any(r.startswith("rev2") for r in rollout.backend.started):
        rollout.step("rev2")
    assert rollout.counts("rev2")[0] == 0, "no old replica left"
    rollout.backend.crash(next(r for r in rollout.backend.started if r.startswith("rev2")), "exited")
    wanted = desired("rev2", 1, "BestEffortControlledRollout")
    actions, _ = plan([wanted], rollout.backend.observe(), rollout.book, 0, str)
    assert [a.to_revision for a in actions if isinstance(a, RollBack)] == ["rev1"]


def test_best_effort_does_not_roll_back_a_first_revision_or_a_finished_rollout() -> None:
    backend, wanted = FakeBackend(), desired("rev1", 1, "BestEffortControlledRollout")
    actions, book = plan([wanted], [], RestartBook(), 0, str)
    backend.start(actions[0].spec)  # type: ignore[union-attr]
    backend.crash(backend.started[0], "exited")
    actions, _ = plan([wanted], backend.observe(), book, 0, str)
    assert not [a for a in actions if isinstance(a, RollBack)], "nothing settled to go back to"

    rollout = Rollout(2, "BestEffortControlledRollout")
    rollout.settle("rev2")
    rollout.backend.crash(next(r for r in rollout.backend.started if r.startswith("rev2")), "exited")
    wanted = desired("rev2", 2, "BestEffortControlledRollout")
    actions, _ = plan([wanted], rollout.backend.observe(), rollout.book, 0, str)
    assert not [a for a in actions if isinstance(a, RollBack)], "a crash after the rollout is only restarted"


def test_a_new_revision_that_never_gets_ready_leaves_the_old_one_serving() -> None:
    rollout = Rollout(2, "RollingUpdate")
    for _ in range(30):
        rollout.backend.finish_stopping()
        for replica_id in rollout.backend.of(ReplicaPhase.STARTING):
            if replica_id.startswith("rev2"):
                rollout.backend.crash(replica_id, "readiness never succeeded")
        wanted = desired("rev2", 2, "RollingUpdate")
        actions, rollout.book = plan(
            [wanted], rollout.backend.observe(), rollout.book, rollout.now, lambda s: f"rev2-{rollout.now}"
        )
        for action in actions:
            if isinstance(action, Start):
                rollout.backend.start(action.spec)
            elif isinstance(action, Stop | Drain):
                rollout.backend.stop(action.replica_id)
            else:
                rollout.backend.forget(action.replica_id)  # type: ignore[union-attr]
        rollout.now += 1.0
        assert rollout.counts("rev2")[2] >= 1, "the old revision keeps at least max(N - unavailable) ready"
    assert rollout.book.health(("d1", "Echo")).consecutive_failures >= 3
    status = runtime_status([desired("rev2", 2, "RollingUpdate")], rollout.backend.observe(), rollout.book)
    assert status.status == "unhealthy" and status.message.startswith("Rollout stuck")
    assert "previous revision keeps serving" in status.message


def best_effort_mid_rollout() -> Rollout:
    """Three replicas, BestEffortControlledRollout: old and new replicas ready, rollout not done."""
    rollout = Rollout(3, "BestEffortControlledRollout")
    while rollout.counts("rev2")[3] < 1:
        rollout.step("rev2")
    assert rollout.counts("rev2")[2] >= 1, "an old replica still serves"
    return rollout


def judged(rollout: Rollout, new: ReplicaTraffic, old: ReplicaTraffic, strategy: str) -> list[RollBack]:
    traffic = {
        r.replica_id: new if r.revision == "rev2" else old
        for r in rollout.backend.observe()
        if r.phase is ReplicaPhase.RUNNING
    }
    actions, _ = plan(
        [desired("rev2", 2, strategy)], rollout.backend.observe(), rollout.book, 0, str, traffic
    )
    return [a for a in actions if isinstance(a, RollBack)]


@pytest.mark.parametrize(
    ("new", "old", "rolls_back"),
    [
        (ReplicaTraffic(20, 10), ReplicaTraffic(100, 0), True),  # 50% against 0%
        (ReplicaTraffic(20, 2), ReplicaTraffic(100, 0), True),  # 10 points worse than 0%
        (ReplicaTraffic(20, 1), ReplicaTraffic(100, 0), False),  # 5%: not clearly worse
        (ReplicaTraffic(19, 19), ReplicaTraffic(100, 0), False),  # too few requests to judge
        (ReplicaTraffic(100, 40), ReplicaTraffic(100, 30), False),  # worse, but not twice as bad
        (ReplicaTraffic(100, 70), ReplicaTraffic(100, 30), True),  # +40 points and more than twice
        (ReplicaTraffic(20, 5), ReplicaTraffic(5, 5), True),  # old too quiet to judge: counted as 0%
    ],
)
def test_best_effort_rolls_back_on_a_clearly_worse_error_rate(
    new: ReplicaTraffic, old: ReplicaTraffic, rolls_back: bool
) -> None:
    rollbacks = judged(best_effort_mid_rollout(), new, old, "BestEffortControlledRollout")
    assert bool(rollbacks) is rolls_back
    if rolls_back:
        assert rollbacks[0].to_revision == "rev1"
        assert f"{new.errors / new.requests:.0%} of {new.requests} requests" in rollbacks[0].reason


def test_other_strategies_ignore_error_rates() -> None:
    rollout = best_effort_mid_rollout()
    assert judged(rollout, ReplicaTraffic(100, 100), ReplicaTraffic(100, 0), "RollingUpdate") == []


def test_after_a_rollback_the_replicas_of_the_undone_revision_go_first() -> None:
    rollout = best_effort_mid_rollout()  # settled rev1; rev1 and rev2 both serving
    actions, _ = plan(
        [desired("rev3", 3, "BestEffortControlledRollout")], rollout.backend.observe(), rollout.book, 0, str
    )
    stopped = [a.replica_id for a in actions if isinstance(a, Stop | Drain)]
    assert stopped and all(r.startswith("rev2") for r in stopped), stopped
