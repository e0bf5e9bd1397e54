"""A fake replica and helpers for backend tests: watching phases, and proving no process survived.

The fake replica behaves like bentoml where it matters (a supervisor serving HTTP, a worker in its own
session). `FakeCommand` and `FakeMaterializer` are picklable, so a Ray actor on another node can run
the fake as its replica.
"""

import os
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil

from tiffin.backends.protocol import (
    BentoRef,
    Materialize,
    Materialized,
    ReplicaPhase,
    ReplicaSpec,
    ReplicaStatus,
)
from tiffin.backends.replica_dir import read_json

DEADLINE_S = 15.0
POLL_S = 0.02

# Like bentoml: a supervisor serving HTTP and a worker that starts its own session.
FAKE_REPLICA = textwrap.dedent(
    """
    import http.server, json, os, sys, time
    from pathlib import Path

    port, flags = int(sys.argv[1]), Path(os.environ["FAKE_FLAGS"])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    print(os.environ.get("FAKE_SAY", ""), flush=True)
    if os.environ.get("FAKE_EXIT"):
        sys.exit(int(os.environ["FAKE_EXIT"]))
    worker = os.fork()
    if worker == 0:
        os.setsid()
        while True:
            time.sleep(1)
    hog, readyz_hits = [], [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = True
            if self.path == "/readyz":
                readyz_hits[0] += 1
                ok = os.environ.get("FAKE_NEVER_READY") != "1"
            elif self.path == "/livez":
                ok = not (flags / "fail-livez").exists()
            elif self.path.startswith("/alloc/"):
                hog.append(b"x" * (int(self.path.rsplit("/", 1)[1]) * 1024 * 1024))
            cpus = sorted(os.sched_getaffinity(0))
            body = json.dumps({"env": dict(os.environ), "readyz_hits": readyz_hits[0], "cpus": cpus}).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    print("fake replica listening on", port, flush=True)
    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
    """
)


@dataclass(frozen=True)
class FakeCommand:
    """The fake replica's command line, bound where the backend says."""

    program: str

    def __call__(self, spec: ReplicaSpec, bento: Materialized, host: str, port: int) -> list[str]:
        return [sys.executable, self.program, str(port), host]


@dataclass(frozen=True)
class FakeMaterializer:
    """A node materializer that makes nothing: every bento is `bento_dir` with this Python."""

    bento_dir: str

    def __call__(self, node_home: Path) -> Materialize:
        def materialize(bento: BentoRef) -> Materialized:
            return Materialized(Path(self.bento_dir), Path(sys.executable))

        return materialize


class Observed(Protocol):
    def observe(self) -> list[ReplicaStatus]: ...


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status_of(backend: Observed, replica_id: str) -> ReplicaStatus | None:
    return next((s for s in backend.observe() if s.replica_id == replica_id), None)


def wait_phase(
    backend: Observed, replica_id: str, phase: ReplicaPhase, timeout: float = DEADLINE_S
) -> ReplicaStatus:
    def reached() -> ReplicaStatus | None:
        status = status_of(backend, replica_id)
        return status if status is not None and status.phase is phase else None

    status: ReplicaStatus = wait_for(reached, f"{replica_id} to be {phase}", timeout)
    return status


def wait_gone(backend: Observed, replica_id: str, timeout: float = DEADLINE_S) -> None:
    wait_for(lambda: status_of(backend, replica_id) is None, f"{replica_id} to disappear", timeout)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if _running(p)]


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_all_gone(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    wait_for(lambda: not alive(processes), f"processes {[p.pid for p in processes]} to exit", timeout)


def get(url: str, timeout: float = 5.0) -> dict[str, Any]:
    response = httpx.get(url, timeout=timeout, trust_env=False)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


class Trees:
    """Remembers every process the tests saw, so teardown can prove none survived."""

    def __init__(self) -> None:
        self.seen: list[psutil.Process] = []

    def of(self, status: ReplicaStatus) -> list[psutil.Process]:
        """The replica's tree: launcher, shim, supervisor, worker(s)."""
        assert status.pid is not None
        root = psutil.Process(status.pid)
        processes = [root, *root.children(recursive=True)]
        self.seen.extend(processes)
        return processes


def is_shim(process: psutil.Process) -> bool:
    return "tiffin.backends.shim" in process.cmdline()[:4]  # not `unshare ... -m tiffin.backends.shim`


def shim_of(processes: list[psutil.Process]) -> psutil.Process:
    return next(p for p in processes if is_shim(p))


def supervisor_of(processes: list[psutil.Process]) -> psutil.Process:
    children: list[psutil.Process] = shim_of(processes).children()
    assert len(children) == 1
    return children[0]


def workers_of(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that started their own session (as bentoml's workers do)."""
    workers = [p for p in processes if os.getsid(p.pid) == p.pid and p.pid != processes[0].pid]
    return [p for p in workers if not is_shim(p)]


def recorded_trees(root: Path) -> list[psutil.Process]:
    """Every process (and descendant) recorded in a replica.json under `root`."""
    found: list[psutil.Process] = []
    for record in root.rglob("replica.json"):
        data = read_json(record) or {}
        try:
            process = psutil.Process(int(data["pid"]))
            if abs(process.create_time() - float(data["create_time"])) < 1.0:
                found.extend([process, *process.children(recursive=True)])
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    return found


def kill_and_check(processes: list[psutil.Process]) -> list[int]:
    """SIGKILL the processes; the PIDs of those that were still running."""
    survivors = alive(processes)
    for process in survivors:
        try:
            process.kill()
        except psutil.Error:
            continue
    return [p.pid for p in survivors]


def fake_spec(tmp_path: Path, replica_id: str, **fields: Any) -> ReplicaSpec:
    flags = tmp_path / "flags" / replica_id
    flags.mkdir(parents=True, exist_ok=True)
    env = {"FAKE_FLAGS": str(flags), **fields.pop("env", {})}
    return ReplicaSpec(
        replica_id=replica_id,
        deployment=fields.pop("deployment", "d1"),
        service=fields.pop("service", "Echo"),
        revision="r1",
        bento=BentoRef("fake:1"),
        env=env,
        **fields,
    )
