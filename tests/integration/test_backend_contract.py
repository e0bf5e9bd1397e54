"""The `Backend` contract, against each backend: `LocalBackend`, and `RayBackend` on a Ray cluster on
this machine (a head and one worker node; see `tests.support.ray_cluster`). A fake replica that, like
bentoml, leaves a worker in its own session is started, observed, stopped, crashed and adopted; every
test ends with no process of any replica left, and on Ray with no actor left.
"""

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ray_cluster import NAMESPACE, ray_cluster
from tests.support.replicas import (
    FAKE_REPLICA,
    FakeCommand,
    FakeMaterializer,
    Trees,
    assert_all_gone,
    fake_spec,
    get,
    kill_and_check,
    recorded_trees,
    shim_of,
    status_of,
    wait_for,
    wait_gone,
    wait_phase,
    workers_of,
)
from tiffin.backends.capacity import HostCapacity
from tiffin.backends.local import LocalBackend
from tiffin.backends.protocol import Backend, Materialized, ReplicaPhase, ReplicaSpec, ReplicaStatus

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
GiB = 1024 * MiB
RAY_DEADLINE_S = 30.0
TRACEBACK = 'Traceback (most recent call last):\n  File "service.py", line 3\nValueError: no weights'


@pytest.fixture(scope="module")
def ray_node() -> Iterator[Any]:
    with ray_cluster([{"num_cpus": 4}]) as cluster:
        print(f"\nRay cluster (head + 1 worker node) started in {cluster.started_s:.1f} s")
        yield cluster


@pytest.fixture(params=["local", "ray"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_node")
    return str(request.param)


@pytest.fixture
def fake_replica(tmp_path: Path) -> Path:
    program = tmp_path / "fake_replica.py"
    program.write_text(FAKE_REPLICA)
    return program


@pytest.fixture
def trees() -> Trees:
    return Trees()


@pytest.fixture
def replicas_root(kind: str, tmp_path: Path) -> Path:
    """Where the backend keeps its replicas' directories (on the Ray node: under the node's home)."""
    return tmp_path / ("replicas" if kind == "local" else "node/replicas")


@pytest.fixture
def make_backend(
    kind: str, tmp_path: Path, fake_replica: Path, trees: Trees
) -> Iterator[Callable[[], Backend]]:
    """Backends of `kind` with fast probes; at teardown no replica process (nor Ray actor) may survive."""
    made: list[Backend] = []
    command = FakeCommand(str(fake_replica))

    def make() -> Backend:
        backend: Backend
        if kind == "local":
            backend = LocalBackend(
                tmp_path / "replicas",
                HostCapacity(cpu_millicores=8000, memory_bytes=64 * GiB),
                lambda bento: Materialized(tmp_path, Path(sys.executable)),
                command=command,
                probe_interval_s=0.05,
                liveness_interval_s=0.1,
                probe_timeout_s=1.0,
                stop_grace_s=3.0,
            )
        else:
            from tiffin.backends.ray.actor import NodeSettings  # noqa: PLC0415 - ray is optional
            from tiffin.backends.ray.backend import RayBackend  # noqa: PLC0415

            settings = NodeSettings(
                node_home=str(tmp_path / "node"),
                stop_grace_s=3.0,
                probe_interval_s=0.05,
                liveness_interval_s=0.1,
                command=command,
            )
            backend = RayBackend(None, FakeMaterializer(str(tmp_path)), settings)
        made.append(backend)
        return backend

    yield make
    for backend in reversed(made):
        backend.close(stop_replicas=True)
    leftovers = recorded_trees(tmp_path) + trees.seen
    survivors = kill_and_check(leftovers)
    assert_all_gone(leftovers)
    assert not survivors, f"replica processes survived the test: {survivors}"
    if kind == "ray":
        _assert_no_actor_left()


def _assert_no_actor_left() -> None:
    import ray  # noqa: PLC0415 - optional dependency

    def ours() -> list[str]:
        named = ray.util.list_named_actors(all_namespaces=True)
        return [entry["name"] for entry in named if entry["namespace"] == NAMESPACE]

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not ours(), "the test's actors to go", 10.0)
    left = ours()
    for name in left:
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    assert not left, f"Ray actors survived the test: {left}"


@pytest.fixture
def backend(make_backend: Callable[[], Backend]) -> Backend:
    return make_backend()


def start_running(backend: Backend, spec: ReplicaSpec) -> ReplicaStatus:
    backend.start(spec)
    return wait_phase(backend, spec.replica_id, ReplicaPhase.RUNNING, RAY_DEADLINE_S)


def test_a_replica_becomes_ready_serves_and_is_observed(backend: Backend, tmp_path: Path) -> None:
    heard: list[str] = []
    backend.subscribe(lambda: heard.append("changed"))
    backend.start(fake_spec(tmp_path, "r-ready", env={"GREETING": "hello"}))
    first = status_of(backend, "r-ready")
    assert first is not None and first.phase in (ReplicaPhase.PENDING, ReplicaPhase.STARTING)
    assert "r-ready" not in backend.usage(), "a replica that is not running yet uses nothing"

    status = wait_phase(backend, "r-ready", ReplicaPhase.RUNNING, RAY_DEADLINE_S)

    assert heard, "getting ready is a phase change"
    assert (status.deployment, status.service, status.revision) == ("d1", "Echo", "r1")
    assert status.url is not None and status.pid is not None
    assert get(status.url)["env"]["GREETING"] == "hello"
    assert "fake replica listening" in wait_for(lambda: backend.read_log("r-ready", 5), "output in the log")
    usage = wait_for(lambda: backend.usage().get("r-ready"), "its usage", RAY_DEADLINE_S)
    assert usage.memory_bytes > 0 and usage.cpu_seconds > 0
    with pytest.raises(ValueError, match="stop it instead"):
        backend.forget("r-ready")


def test_stop_leaves_no_process(backend: Backend, tmp_path: Path, trees: Trees, replicas_root: Path) -> None:
    status = start_running(backend, fake_spec(tmp_path, "r-stop"))
    processes = trees.of(status)
    assert len(workers_of(processes)) == 1, "the fake worker should run in its own session"
    heard: list[str] = []
    backend.subscribe(lambda: heard.append("changed"))

    backend.stop("r-stop")

    stopping = status_of(backend, "r-stop")
    assert stopping is None or stopping.phase is ReplicaPhase.STOPPING
    wait_gone(backend, "r-stop", RAY_DEADLINE_S)
    assert heard, "gone after a stop is a change"
    assert_all_gone(processes)
    assert not (replicas_root / "r-stop").exists()
    assert "fake replica listening" in backend.read_log("r-stop", 5), "its output is kept a while"


def test_stop_right_after_start(backend: Backend, tmp_path: Path, replicas_root: Path) -> None:
    backend.start(fake_spec(tmp_path, "r-hasty"))
    backend.stop("r-hasty")

    wait_gone(backend, "r-hasty", RAY_DEADLINE_S)
    wait_for(lambda: not (replicas_root / "r-hasty").exists(), "its directory to go")


def test_a_crash_is_failed_with_its_reason_and_its_output_outlives_it(
    backend: Backend, tmp_path: Path, replicas_root: Path
) -> None:
    backend.start(fake_spec(tmp_path, "r-crash", env={"FAKE_SAY": TRACEBACK, "FAKE_EXIT": "3"}))

    failed = wait_phase(backend, "r-crash", ReplicaPhase.FAILED, RAY_DEADLINE_S)
    assert failed.reason == "exited with code 3: ValueError: no weights"
    assert failed.url is None
    backend.forget("r-crash")
    wait_gone(backend, "r-crash")

    assert "ValueError: no weights" in wait_for(lambda: backend.read_log("r-crash", 10), "its output")
    (ended,) = wait_for(lambda: backend.ended("d1"), "the ended replica")
    assert (ended.replica_id, ended.service) == ("r-crash", "Echo")
    assert ended.reason.startswith("exited with code 3")
    wait_for(lambda: not (replicas_root / "r-crash").exists(), "its directory to go: only the output is kept")


def test_a_killed_shim_fails_the_replica_and_takes_the_tree(
    backend: Backend, tmp_path: Path, trees: Trees
) -> None:
    status = start_running(backend, fake_spec(tmp_path, "r-shim"))
    processes = trees.of(status)

    shim_of(processes).kill()

    failed = wait_phase(backend, "r-shim", ReplicaPhase.FAILED, RAY_DEADLINE_S)
    assert "shim died" in failed.reason
    assert_all_gone(processes)


def test_a_new_backend_adopts_running_replicas(
    make_backend: Callable[[], Backend], tmp_path: Path, trees: Trees
) -> None:
    first = make_backend()
    kept = start_running(first, fake_spec(tmp_path, "r-kept"))
    kept_tree = trees.of(kept)
    first.close(stop_replicas=False)

    second = make_backend()

    adopted = wait_for(lambda: status_of(second, "r-kept"), "r-kept to be adopted", RAY_DEADLINE_S)
    assert adopted.pid == kept.pid and adopted.url == kept.url
    assert wait_phase(second, "r-kept", ReplicaPhase.RUNNING, RAY_DEADLINE_S).pid == kept.pid
    second.stop("r-kept")
    wait_gone(second, "r-kept", RAY_DEADLINE_S)
    assert_all_gone(kept_tree)
