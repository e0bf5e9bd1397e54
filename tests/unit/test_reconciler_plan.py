"""The reconciler's pure core against a FakeBackend and a hand-moved clock: no processes, no sleeping."""

import itertools
from collections.abc import Sequence

import pytest

from tiffin.backends.fake import FakeBackend
from tiffin.backends.protocol import BentoRef, ReplicaPhase, ReplicaSpec, ReplicaStatus
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.reconciler.plan import (
    BACKOFF_FIRST_S,
    Action,
    DesiredService,
    Forget,
    RestartBook,
    Start,
    Stop,
    plan,
)
from tiffin.reconciler.routing import RouteInput, newer, snapshot
from tiffin.reconciler.status import BuildState, build_status, runtime_status, terminated_status


def desired(service: str = "Echo", revision: str = "rev1", replicas: int = 1) -> DesiredService:
    template = ReplicaSpec("", "d1", service, revision, BentoRef("echo:v1"))
    return DesiredService("d1", service, revision, replicas, template)


class World:
    """A FakeBackend plus the reconciler's memory, stepped at explicit times."""

    def __init__(self) -> None:
        self.backend = FakeBackend()
        self.book = RestartBook()
        self.now = 0.0
        self._ids = itertools.count()

    def step(self, wanted: Sequence[DesiredService]) -> list[Action]:
        actions, self.book = plan(wanted, self.backend.observe(), self.book, self.now, self._new_id)
        for action in actions:
            if isinstance(action, Start):
                self.backend.start(action.spec)
            elif isinstance(action, Stop):
                self.backend.stop(action.replica_id)
            else:
                self.backend.forget(action.replica_id)
        return actions

    def _new_id(self, service: DesiredService) -> str:
        return f"{service.service}-{service.revision}-{next(self._ids)}"


def test_starts_the_desired_replicas_once() -> None:
    world = World()
    first = world.step([desired(replicas=3)])
    assert len([a for a in first if isinstance(a, Start)]) == 3
    assert len(set(world.backend.started)) == 3
    assert world.step([desired(replicas=3)]) == []


def test_a_crashed_replica_is_replaced_after_a_growing_backoff() -> None:
    world = World()
    world.step([desired()])
    delays = []
    for _ in range(4):
        world.backend.crash(world.backend.of(ReplicaPhase.STARTING)[0], "exited with code 3")
        actions = world.step([desired()])
        assert any(isinstance(a, Forget) for a in actions)
        assert not any(isinstance(a, Start) for a in actions)
        crashed_at = world.now
        while not world.backend.of(ReplicaPhase.STARTING):
            world.now += 0.25
            world.step([desired()])
        delays.append(world.now - crashed_at)
    assert delays == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S, 8 * BACKOFF_FIRST_S]
    health = world.book.health(("d1", "Echo"))
    assert (health.restarts, health.last_reason) == (4, "exited with code 3")


def test_a_ready_replica_clears_the_failure_streak_but_keeps_the_restart_count() -> None:
    world = World()
    world.step([desired()])
    world.backend.crash(world.backend.started[-1])
    world.step([desired()])
    world.now += BACKOFF_FIRST_S
    world.step([desired()])
    world.backend.set_ready(world.backend.started[-1])
    world.step([desired()])
    health = world.book.health(("d1", "Echo"))
    assert (health.restarts, health.consecutive_failures) == (1, 0)


def test_recreate_stops_every_old_replica_before_starting_new_ones() -> None:
    world = World()
    world.step([desired(revision="rev1", replicas=2)])
    old = list(world.backend.started)
    actions = world.step([desired(revision="rev2", replicas=2)])
    assert {a.replica_id for a in actions if isinstance(a, Stop)} == set(old)
    assert not [a for a in actions if isinstance(a, Start)]
    world.backend.finish_stopping()
    actions = world.step([desired(revision="rev2", replicas=2)])
    assert len([a for a in actions if isinstance(a, Start)]) == 2
    assert all(world.backend.specs[r].revision == "rev2" for r in world.backend.started[2:])


def test_scaling_down_stops_pending_and_starting_replicas_before_running_ones() -> None:
    world = World()
    world.step([desired(replicas=3)])
    running = world.backend.started[0]
    world.backend.set_ready(running)
    actions = world.step([desired(replicas=1)])
    stopped = {a.replica_id for a in actions if isinstance(a, Stop)}
    assert running not in stopped and len(stopped) == 2


def test_replicas_of_removed_deployments_are_stopped() -> None:
    world = World()
    world.step([desired(replicas=2)])
    actions = world.step([])
    assert len([a for a in actions if isinstance(a, Stop)]) == 2
    world.backend.finish_stopping()
    assert world.step([]) == []


def status_of(world: World, wanted: DesiredService) -> str:
    return runtime_status([wanted], world.backend.observe(), world.book).status


def test_status_moves_from_deploying_to_running() -> None:
    world = World()
    wanted = desired(replicas=2)
    world.step([wanted])
    assert status_of(world, wanted) == "deploying"
    world.backend.set_ready(world.backend.started[0])
    assert status_of(world, wanted) == "deploying"
    world.backend.set_ready(world.backend.started[1])
    assert status_of(world, wanted) == "running"


def test_a_service_that_keeps_crashing_is_unhealthy_with_its_reason() -> None:
    world = World()
    wanted = desired()
    world.step([wanted])
    for _ in range(3):
        world.backend.crash(world.backend.started[-1], "ImportError: no module named x")
        world.step([wanted])
        world.now += 60
        world.step([wanted])
    status = runtime_status([wanted], world.backend.observe(), world.book)
    assert status.status == "unhealthy"
    assert "ImportError" in status.message


def test_pending_reason_is_shown_while_deploying() -> None:
    pending = ReplicaStatus("r1", "d1", "Echo", "rev1", ReplicaPhase.PENDING, reason="waiting for 4000m CPU")
    status = runtime_status([desired()], [pending], RestartBook())
    assert status.status == "deploying" and "waiting for 4000m CPU" in status.message


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (BuildState("building"), "image-building"),
        (BuildState("failed", "boom"), "image-build-failed"),
        (BuildState("ready"), None),
    ],
)
def test_build_statuses(build: BuildState, expected: str | None) -> None:
    status = build_status(build)
    assert (status.status if status else None) == expected


def test_terminating_until_every_replica_is_gone() -> None:
    replica = ReplicaStatus("r1", "d1", "Echo", "rev1", ReplicaPhase.STOPPING)
    assert terminated_status([replica]).status == "terminating"
    assert terminated_status([]).status == "terminated"


def test_statuses_are_the_strings_the_client_reads() -> None:
    """docs/bentocloud-api.md §5.1: the values go on the wire and into the store as they are."""
    assert [s.value for s in DeploymentStatus] == [
        "unknown",
        "non-deployed",
        "running",
        "unhealthy",
        "failed",
        "deploying",
        "terminating",
        "terminated",
        "image-building",
        "image-build-failed",
        "image-build-succeeded",
        "scaled-to-zero",
    ]
    assert terminated_status([]).status is DeploymentStatus.TERMINATED
    assert f"{DeploymentStatus.SCALED_TO_ZERO}" == "scaled-to-zero"


def test_only_running_replicas_are_routed() -> None:
    observed = [
        ReplicaStatus("a", "d1", "Echo", "rev1", ReplicaPhase.RUNNING, url="http://127.0.0.1:1"),
        ReplicaStatus("b", "d1", "Echo", "rev1", ReplicaPhase.STARTING, url="http://127.0.0.1:2"),
        ReplicaStatus("c", "d1", "Model", "rev1", ReplicaPhase.RUNNING, url="http://127.0.0.1:3"),
        ReplicaStatus("d", "d2", "Echo", "rev1", ReplicaPhase.RUNNING, url="http://127.0.0.1:4"),
    ]
    route = RouteInput("d1", 31000, "Echo", {"Echo": 31001, "Model": 31002}, True, "running", "")
    result = snapshot([route], observed).deployments["d1"]
    assert result.services["Echo"].endpoints == ("http://127.0.0.1:1",)
    assert result.services["Model"].endpoints == ("http://127.0.0.1:3",)
    assert (result.port, result.entry_service, result.protected) == (31000, "Echo", True)


def test_the_domain_travels_in_the_snapshot_and_a_new_one_is_published() -> None:
    route = RouteInput("d1", 31000, "Echo", {"Echo": 31001}, False, "running", "")
    plain = newer(None, snapshot([route], []))
    assert plain is not None and (plain.version, plain.domain) == (1, "")

    named = newer(plain, snapshot([route], [], "apps.example.test"))

    assert named is not None and (named.version, named.domain) == (2, "apps.example.test")
    assert newer(named, snapshot([route], [], "apps.example.test")) is None


def test_while_a_revision_builds_its_running_replicas_are_kept_and_none_start() -> None:
    """After a restart the build is checked again; adopted replicas must not be stopped meanwhile."""
    world = World()
    world.step([desired(replicas=2)])
    adopted = list(world.backend.started)
    building = DesiredService("d1", "Echo", "rev1", 3, None)
    assert world.step([building]) == []
    assert set(world.backend.replicas) == set(adopted)
