"""A Ray cluster on this machine for tests: a head node and worker nodes, all on 127.0.0.1.

Ray turns 127.0.0.1 into the machine's routable address when it connects, and then hangs on that
address here (docs: FACTS.md, "Ray"). With `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` Ray's idea of this
node's address is the loopback one, for the test process and (through the environment) for every node
process the cluster starts, so no network namespace is needed. The repository root goes on the nodes'
`PYTHONPATH` so actors can load the test fakes they are handed. Only the processes the `Cluster`
started are stopped (`Cluster.shutdown`); never `ray stop`, which kills every Ray process on the
machine by name.
"""

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "tiffin"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # also for processes that connect to it
FAST_HEALTH_CHECKS = {  # a dead node is noticed after ~2.5 s instead of 15 s, a hung one after ~5 s
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 5,
}


@contextmanager
def _environment(changes: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def ray_cluster(
    workers: list[dict[str, Any]],
    *,
    fast_health_checks: bool = False,
    dashboard: bool = False,
    node_env: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """A started `ray.cluster_utils.Cluster` (head without CPUs, plus `workers`, each the arguments of
    `Cluster.add_node`; every node with `node_env` in its environment), this process connected to it;
    skips the test when Ray is missing or the cluster cannot start. Yields the cluster; `.started_s`
    says how long it took to start."""
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**LOOPBACK_ENV, "PYTHONPATH": pythonpath, **(node_env or {})}
    with _environment(env):
        ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'tiffin[ray]')")
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # in case ray was imported earlier
        from ray.cluster_utils import Cluster  # noqa: PLC0415 - optional dependency

        began = time.monotonic()
        head: dict[str, Any] = {"num_cpus": 0, "include_dashboard": dashboard}
        if dashboard:
            head["dashboard_port"] = free_port()  # not Ray's fixed 8265: other clusters may run
        if fast_health_checks:
            head["_system_config"] = FAST_HEALTH_CHECKS
        cluster = None
        try:
            cluster = Cluster(initialize_head=True, head_node_args=head)
            for worker in workers:
                cluster.add_node(**worker)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        except Exception as error:
            if cluster is not None:
                cluster.shutdown()
            pytest.skip(f"a Ray cluster could not start here: {error}")
        cluster.started_s = time.monotonic() - began
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
