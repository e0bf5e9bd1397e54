"""How long one reconcile step takes with many deployments: 500 deployments, 2000 replicas, no processes.

Run: `.venv/bin/python -m bench.reconcile_step [--deployments 500] [--replicas 4] [--steps 20]`.

It creates the deployments through the API (in process, on SQLite in a temporary home), runs the real
reconciler against the fake backend and a builder that answers at once, steps until every replica is
started and ready, then times steady-state steps (nothing changes) and prints milliseconds per step:
the cost a leading controller pays twice a second just to notice that nothing needs doing.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.conftest import ADMIN_TOKEN, TOKEN_HEADER, Api

from tiffin.backends.fake import FakeBackend
from tiffin.backends.protocol import ReplicaPhase
from tiffin.builder import BuildRequest, BuiltBento
from tiffin.core.clock import FakeClock
from tiffin.core.settings import Settings
from tiffin.reconciler.loop import Reconciler, ReconcilerDeps
from tiffin.server.wiring import build


class InstantBuilder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def build(self, request: BuildRequest) -> BuiltBento:
        return BuiltBento(self.root, Path("/usr/bin/python3"), "key", self.root / "build.log")

    def read_log(self, bento_tag: str, tail: int | None = None) -> str:
        return ""


def populate(api: Api, deployments: int, replicas: int) -> None:
    api.push("bento", "echo", "v1")
    scaling = {"min_replicas": replicas, "max_replicas": replicas}
    for number in range(deployments):
        body = {"bento": "echo:v1", "name": f"d{number}", "services": {"echo": {"scaling": scaling}}}
        api.ok("POST", "/api/v2/deployments", json=body)


def reconciler(api: Api, backend: FakeBackend, root: Path) -> Reconciler:
    context = api.client.app.state.context  # type: ignore[attr-defined]
    deps = ReconcilerDeps(
        db=context.db,
        backend=backend,
        builder=InstantBuilder(root),  # type: ignore[arg-type]
        artifacts=context.artifacts,
        secrets=context.secrets,
        box=context.box,
        catalog=context.instance_types,
        api_endpoint="http://127.0.0.1:3000",
        clock=context.clock,
        ports=context.ports,
    )
    return Reconciler(deps)


def settle(loop: Reconciler, backend: FakeBackend, wanted: int) -> None:
    """Step until every replica is started and ready."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        loop.step()
        for replica_id in backend.of(ReplicaPhase.STARTING):
            backend.set_ready(replica_id)
        if len(backend.of(ReplicaPhase.RUNNING)) >= wanted:
            loop.step()  # statuses and records written once more, then nothing changes
            return
    raise SystemExit("the replicas never all got ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--replicas", type=int, default=4, help="per deployment")
    parser.add_argument("--steps", type=int, default=20, help="steady-state steps timed")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tiffin-bench-step-") as tmp:
        root = Path(tmp)
        home = root / "home"
        settings = Settings(
            home=home,
            database_url=f"sqlite:///{home}/t.db",
            bootstrap_token=ADMIN_TOKEN,
            deployment_ports=(20000, 29999),
        )
        tiffin = build(settings, clock=FakeClock())
        api = Api(TestClient(tiffin.app, headers={TOKEN_HEADER: ADMIN_TOKEN}), FakeClock(), settings)
        started = time.monotonic()
        populate(api, options.deployments, options.replicas)
        print(f"{options.deployments} deployments created in {time.monotonic() - started:.1f} s", flush=True)
        backend = FakeBackend()
        loop = reconciler(api, backend, root)
        settle(loop, backend, options.deployments * options.replicas)
        times = []
        for _ in range(options.steps):
            began = time.perf_counter()
            loop.step()
            times.append((time.perf_counter() - began) * 1000)
        replicas = len(backend.of(ReplicaPhase.RUNNING))
        print(
            f"one steady step, {options.deployments} deployments and {replicas} replicas: median"
            f" {statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f},"
            f" {options.steps} steps)"
        )
        loop.close()
        tiffin.db.dispose()


if __name__ == "__main__":
    main()
