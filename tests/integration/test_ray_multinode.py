"""`RayBackend` on a three-node Ray cluster on this machine: a head without CPUs and two worker nodes
that advertise different GPU types (`gpu-type:nvidia-tesla-t4`, `gpu-type:nvidia-l4`; Ray lets a node
declare GPUs it does not have). Replicas land on the node of their GPU type; a type no node offers stays
PENDING with a sentence saying so; killing a worker node fails its replica with a reason naming the
node (what makes the reconciler replace it) and takes the replica's processes down, and a replacement
runs on the other node. A node whose raylet hangs (alive, but cut off from Ray's head) has its
replica fenced before the replica is reported failed. Fast health checks make Ray notice the dead node
in ~2.5 s, the hung one in ~5 s.
"""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ray_cluster import ray_cluster
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
    status_of,
    wait_for,
    wait_phase,
)
from tiffin.backends.protocol import ReplicaPhase, Resources

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
T4, L4 = "gpu-type:nvidia-tesla-t4", "gpu-type:nvidia-l4"
WORKERS = [
    {"num_cpus": 1, "num_gpus": 1, "resources": {T4: 1}},
    {"num_cpus": 1, "num_gpus": 1, "resources": {L4: 1}},
]


@pytest.fixture
def cluster() -> Iterator[Any]:
    with ray_cluster(WORKERS, fast_health_checks=True, dashboard=True) as started:
        print(f"\nRay cluster (head + 2 worker nodes) started in {started.started_s:.1f} s")
        yield started


def node_resources() -> dict[str, dict[str, float]]:
    import ray  # noqa: PLC0415 - optional dependency

    return {node["NodeID"]: node["Resources"] for node in ray.nodes() if node["Alive"]}


def test_replicas_go_to_the_node_of_their_gpu_type_and_a_dead_node_fails_its_replica(
    cluster: Any, tmp_path: Path
) -> None:
    from tiffin.backends.ray.actor import NodeSettings  # noqa: PLC0415 - ray is optional
    from tiffin.backends.ray.backend import RayBackend  # noqa: PLC0415

    program = tmp_path / "fake_replica.py"
    program.write_text(FAKE_REPLICA)
    settings = NodeSettings(
        node_home=str(tmp_path / "node"),
        stop_grace_s=3.0,
        probe_interval_s=0.05,
        command=FakeCommand(str(program)),
    )
    backend = RayBackend(None, FakeMaterializer(str(tmp_path)), settings)
    trees = Trees()
    try:
        _scenario(backend, cluster, tmp_path, trees)
    finally:
        backend.close(stop_replicas=True)
        leftovers = recorded_trees(tmp_path) + trees.seen
        survivors = kill_and_check(leftovers)
        assert_all_gone(leftovers)
        assert not survivors, f"replica processes survived the test: {survivors}"


def _scenario(backend: Any, cluster: Any, tmp_path: Path, trees: Trees) -> None:
    on_t4 = Resources(gpus=1, gpu_type="nvidia-tesla-t4")
    on_l4 = Resources(gpus=1, gpu_type="NVIDIA L4")  # any spelling of the type
    on_a100 = Resources(gpus=1, gpu_type="nvidia-tesla-a100")
    for replica_id, resources in (("r-t4", on_t4), ("r-l4", on_l4), ("r-a100", on_a100)):
        backend.start(fake_spec(tmp_path, replica_id, resources=resources))

    t4 = wait_phase(backend, "r-t4", ReplicaPhase.RUNNING, DEADLINE_S)
    l4 = wait_phase(backend, "r-l4", ReplicaPhase.RUNNING, DEADLINE_S)

    nodes = node_resources()
    t4_node, l4_node = backend._actors["r-t4"].node_id, backend._actors["r-l4"].node_id
    assert T4 in nodes[t4_node] and L4 in nodes[l4_node]
    assert t4.url is not None and get(t4.url)["env"]["CUDA_VISIBLE_DEVICES"] == "0", "the GPU Ray assigned"
    pending = wait_for(lambda: _explained(status_of(backend, "r-a100")), "r-a100 pending with a reason")
    assert pending.phase is ReplicaPhase.PENDING
    assert pending.reason.startswith(
        "needs 1 nvidia-tesla-a100 GPU; none of the 3 alive Ray nodes offers them"
    )
    t4_processes = trees.of(t4)
    trees.of(l4)

    killed_at = time.monotonic()
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == t4_node), allow_graceful=False)

    failed = wait_phase(backend, "r-t4", ReplicaPhase.FAILED, DEADLINE_S)
    failed_s = time.monotonic() - killed_at
    assert f"Ray node 127.0.0.1 ({t4_node[:12]})" in failed.reason
    assert failed.url is None
    assert_all_gone(t4_processes)
    fenced_s = time.monotonic() - killed_at
    backend.forget("r-t4")  # as the reconciler does, then it starts a replacement
    backend.start(fake_spec(tmp_path, "r-t4-next", resources=Resources(cpu_millicores=500)))
    wait_phase(backend, "r-t4-next", ReplicaPhase.RUNNING, DEADLINE_S)
    replaced_s = time.monotonic() - killed_at
    assert backend._actors["r-t4-next"].node_id == l4_node, "the only worker node left"
    assert status_of(backend, "r-l4").phase is ReplicaPhase.RUNNING  # type: ignore[union-attr]
    print(
        f"node killed -> replica FAILED {failed_s:.2f} s, its processes gone {fenced_s:.2f} s,"
        f" replacement RUNNING {replaced_s:.2f} s"
    )


def _explained(status: Any) -> Any:
    return status if status is not None and status.reason.startswith("needs") else None


def test_a_replica_on_a_hung_node_is_fenced_before_it_is_failed(tmp_path: Path) -> None:
    from tiffin.backends.ray.actor import NodeSettings  # noqa: PLC0415 - ray is optional
    from tiffin.backends.ray.backend import RayBackend  # noqa: PLC0415

    program = tmp_path / "fake_replica.py"
    program.write_text(FAKE_REPLICA)
    settings = NodeSettings(
        node_home=str(tmp_path / "node"), probe_interval_s=0.05, command=FakeCommand(str(program))
    )
    with ray_cluster([{"num_cpus": 1}], fast_health_checks=True) as cluster:
        (worker,) = cluster.worker_nodes
        raylet = worker.all_processes["raylet"][0].process.pid
        backend = RayBackend(None, FakeMaterializer(str(tmp_path)), settings)
        trees = Trees()
        try:
            backend.start(fake_spec(tmp_path, "r-hung"))
            processes = trees.of(wait_phase(backend, "r-hung", ReplicaPhase.RUNNING, DEADLINE_S))
            os.kill(raylet, signal.SIGSTOP)
            hung_at = time.monotonic()

            held = wait_for(lambda: _held(status_of(backend, "r-hung")), "r-hung held while it fences")
            failed = wait_phase(backend, "r-hung", ReplicaPhase.FAILED, DEADLINE_S)
            gone = [p.pid for p in processes if p.is_running() and p.status() != "zombie"]
            assert not gone, f"the replica was failed (and would be replaced) while {gone} still ran"
            assert "replaced once it has fenced itself" in held.reason and held.url is None
            assert "died" in failed.reason
            print(f"raylet hung -> replica failed, fenced, {time.monotonic() - hung_at:.2f} s after")
        finally:
            os.kill(raylet, signal.SIGCONT)
            backend.close(stop_replicas=True)
            leftovers = recorded_trees(tmp_path) + trees.seen
            survivors = kill_and_check(leftovers)
            assert not survivors, f"replica processes survived the test: {survivors}"


def _held(status: Any) -> Any:
    return (
        status
        if status is not None and status.phase is ReplicaPhase.PENDING and "fenced" in status.reason
        else None
    )
