"""LocalBackend with real processes: a fake replica that, like bentoml, leaves a worker in its own
session, then once with a real bentoml Service. Every test ends with no process of any replica left.
What every backend must do (start, stop, crash, adopt) is tested against each in test_backend_contract.
"""

import contextlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.replicas import (
    FAKE_REPLICA,
    Trees,
    alive,
    assert_all_gone,
    fake_spec,
    get,
    kill_and_check,
    recorded_trees,
    shim_of,
    status_of,
    supervisor_of,
    wait_for,
    wait_gone,
    wait_phase,
    workers_of,
)
from tiffin.backends.capacity import GpuInfo, HostCapacity
from tiffin.backends.isolation import Isolation
from tiffin.backends.local import LIVENESS_FAILED, LocalBackend
from tiffin.backends.protocol import (
    BentoRef,
    Materialized,
    MountedFile,
    ReplicaPhase,
    ReplicaSpec,
    ReplicaStatus,
    Resources,
)
from tiffin.backends.replica_dir import read_json

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
GiB = 1024 * MiB
BENTOML_DEADLINE_S = 60.0

# A Tiffin that starts one replica, says so, and waits to be SIGKILLed.
TIFFIN_STAND_IN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tiffin.backends.capacity import HostCapacity
    from tiffin.backends.local import LocalBackend
    from tiffin.backends.protocol import BentoRef, Materialized, ReplicaPhase, ReplicaSpec

    root, fake, flags, ready = map(Path, sys.argv[1:5])
    command = lambda spec, bento, host, port: [sys.executable, str(fake), str(port)]
    materialize = lambda bento: Materialized(root.parent, Path(sys.executable))
    capacity = HostCapacity(8000, 1 << 36)
    backend = LocalBackend(root, capacity, materialize, command=command, probe_interval_s=0.05)
    env = {"FAKE_FLAGS": str(flags)}
    backend.start(ReplicaSpec("r-orphan", "d1", "Echo", "r1", BentoRef("fake:1"), env))
    while backend.observe()[0].phase is not ReplicaPhase.RUNNING:
        time.sleep(0.05)
    ready.touch()
    time.sleep(600)
    """
)

ECHO_SERVICE = textwrap.dedent(
    """
    import bentoml

    @bentoml.service(workers=2)
    class Echo:
        @bentoml.api
        def echo(self, text: str) -> str:
            return text
    """
)


@pytest.fixture
def fake_replica(tmp_path: Path) -> Path:
    program = tmp_path / "fake_replica.py"
    program.write_text(FAKE_REPLICA)
    return program


@pytest.fixture
def trees() -> Trees:
    return Trees()


@pytest.fixture
def make_backend(tmp_path: Path, fake_replica: Path, trees: Trees) -> Iterator[Callable[..., LocalBackend]]:
    """Backends on one root with fast probes; at teardown no replica process may survive."""
    made: list[LocalBackend] = []

    def fake_command(spec: ReplicaSpec, bento: Materialized, host: str, port: int) -> list[str]:
        return [sys.executable, str(fake_replica), str(port)]

    def make(**overrides: Any) -> LocalBackend:
        arguments: dict[str, Any] = {
            "root": tmp_path / "replicas",
            "host": HostCapacity(cpu_millicores=8000, memory_bytes=64 * GiB),
            "materialize": lambda bento: Materialized(tmp_path, Path(sys.executable)),
            "command": fake_command,
            "probe_interval_s": 0.05,
            "liveness_interval_s": 0.1,
            "probe_timeout_s": 1.0,
            "stop_grace_s": 3.0,
            **overrides,
        }
        backend = LocalBackend(**arguments)
        made.append(backend)
        return backend

    yield make
    for backend in reversed(made):
        backend.close(stop_replicas=True)
    leftovers = recorded_trees(tmp_path) + trees.seen
    survivors = kill_and_check(leftovers)
    assert_all_gone(leftovers)
    assert not survivors, f"replica processes survived the test: {survivors}"


@pytest.fixture
def backend(make_backend: Callable[..., LocalBackend]) -> LocalBackend:
    return make_backend()


def start_running(backend: LocalBackend, spec: ReplicaSpec) -> ReplicaStatus:
    backend.start(spec)
    return wait_phase(backend, spec.replica_id, ReplicaPhase.RUNNING)


def test_start_serves_with_env_files_and_logs(
    make_backend: Callable[..., LocalBackend], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIFFIN_TEST_PRIVATE", "must not leak")
    gpus = (GpuInfo(0, "gpu-a", 16 * GiB), GpuInfo(1, "gpu-b", 16 * GiB))
    backend = make_backend(host=HostCapacity(cpu_millicores=8000, memory_bytes=64 * GiB, gpus=gpus))
    absolute = tmp_path / "mounted" / "absolute.txt"
    files = (MountedFile("secrets/token", "s3cret"), MountedFile(str(absolute), "abs"))
    spec = fake_spec(tmp_path, "r-env", env={"GREETING": "hello"}, files=files, resources=Resources(gpus=1))

    status = start_running(backend, spec)

    assert status.url is not None and status.pid is not None
    env = get(status.url)["env"]
    replica_dir = tmp_path / "replicas" / "r-env"
    assert env["GREETING"] == "hello"
    assert env["BENTOML_HOME"] == str(replica_dir / "home")
    assert env["TMPDIR"] == str(replica_dir / "tmp")
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(replica_dir / "prometheus")
    assert env["BENTOML_DO_NOT_TRACK"] == "True"
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "TIFFIN_TEST_PRIVATE" not in env
    secret = replica_dir / "home" / "secrets" / "token"
    assert secret.read_text() == "s3cret" and absolute.read_text() == "abs"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    record = read_json(replica_dir / "replica.json")
    assert record["pid"] == status.pid and record["deployment"] == "d1" and record["port"] > 0
    assert "fake replica listening" in wait_for(lambda: backend.read_log("r-env", 5), "output in the log")


def test_no_gpu_means_empty_cuda_visible_devices(backend: LocalBackend, tmp_path: Path) -> None:
    status = start_running(backend, fake_spec(tmp_path, "r-cpu"))
    assert status.url is not None
    assert get(status.url)["env"]["CUDA_VISIBLE_DEVICES"] == ""


def test_usage_sums_the_tree_and_subscribers_hear_phase_changes(
    backend: LocalBackend, tmp_path: Path
) -> None:
    heard: list[str] = []
    backend.subscribe(lambda: heard.append("changed"))
    backend.start(fake_spec(tmp_path, "r-usage"))
    assert "r-usage" not in backend.usage(), "a replica that is not running yet uses nothing"
    status = wait_phase(backend, "r-usage", ReplicaPhase.RUNNING)
    assert heard, "getting ready is a phase change"
    assert status.url is not None
    before = backend.usage()["r-usage"]

    get(f"{status.url}/alloc/64")

    after = backend.usage()["r-usage"]
    assert after.memory_bytes - before.memory_bytes >= 48 * MiB
    assert after.cpu_seconds >= before.cpu_seconds > 0


def test_killed_supervisor_takes_its_worker(backend: LocalBackend, tmp_path: Path, trees: Trees) -> None:
    status = start_running(backend, fake_spec(tmp_path, "r-super"))
    processes = trees.of(status)
    worker = workers_of(processes)[0]

    supervisor_of(processes).send_signal(signal.SIGKILL)

    failed = wait_phase(backend, "r-super", ReplicaPhase.FAILED)
    assert failed.reason == "killed by SIGKILL"
    assert_all_gone([worker, *processes])
    backend.forget("r-super")
    assert status_of(backend, "r-super") is None
    assert not (tmp_path / "replicas" / "r-super").exists()


def test_never_ready_stays_starting(backend: LocalBackend, tmp_path: Path) -> None:
    backend.start(fake_spec(tmp_path, "r-slow", env={"FAKE_NEVER_READY": "1"}))
    url = wait_phase(backend, "r-slow", ReplicaPhase.STARTING).url
    assert url is not None

    def probed_often() -> bool:
        try:
            return int(get(url)["readyz_hits"]) >= 5
        except httpx.HTTPError:
            return False  # not listening yet

    wait_for(probed_often, "several readiness probes")

    assert status_of(backend, "r-slow").phase is ReplicaPhase.STARTING  # type: ignore[union-attr]


TRACEBACK = 'Traceback (most recent call last):\n  File "service.py", line 3\nValueError: no weights'


def test_a_starting_replica_reports_the_error_its_output_shows(backend: LocalBackend, tmp_path: Path) -> None:
    backend.start(fake_spec(tmp_path, "r-err", env={"FAKE_SAY": TRACEBACK, "FAKE_NEVER_READY": "1"}))

    wait_for(lambda: status_of(backend, "r-err").last_error, "the error in its output")  # type: ignore[union-attr]

    assert status_of(backend, "r-err").last_error == "ValueError: no weights"  # type: ignore[union-attr]


def test_liveness_failure_kills_and_fails(backend: LocalBackend, tmp_path: Path, trees: Trees) -> None:
    status = start_running(backend, fake_spec(tmp_path, "r-live"))
    processes = trees.of(status)

    (tmp_path / "flags" / "r-live" / "fail-livez").touch()

    failed = wait_phase(backend, "r-live", ReplicaPhase.FAILED)
    assert failed.reason == LIVENESS_FAILED
    assert_all_gone(processes)


def test_memory_limit_is_enforced(backend: LocalBackend, tmp_path: Path, trees: Trees) -> None:
    spec = fake_spec(tmp_path, "r-oom", resources=Resources(memory_bytes=150 * MiB))
    status = start_running(backend, spec)
    processes = trees.of(status)

    with contextlib.suppress(httpx.HTTPError):  # it may be killed while answering
        httpx.get(f"{status.url}/alloc/300", timeout=5.0, trust_env=False)

    failed = wait_phase(backend, "r-oom", ReplicaPhase.FAILED)
    assert failed.reason == "OOMKilled"
    assert_all_gone(processes)
    assert "over its limit of 150 MiB" in backend.read_log("r-oom", 10)


def test_capacity_is_never_overcommitted(make_backend: Callable[..., LocalBackend], tmp_path: Path) -> None:
    backend = make_backend(host=HostCapacity(cpu_millicores=1000, memory_bytes=64 * GiB))
    one_core = Resources(cpu_millicores=1000)
    first = start_running(backend, fake_spec(tmp_path, "r-first", resources=one_core))
    assert first.url is not None
    if len(os.sched_getaffinity(0)) > 1:
        assert len(get(first.url)["cpus"]) == 1, "a 1000m replica is pinned to one core"

    backend.start(fake_spec(tmp_path, "r-second", resources=one_core))

    pending = wait_phase(backend, "r-second", ReplicaPhase.PENDING)
    assert pending.reason == "waiting for 1000m CPU: 0m free on this machine"
    assert pending.url is None and pending.pid is None
    backend.stop("r-first")
    wait_phase(backend, "r-second", ReplicaPhase.RUNNING)


def test_a_replica_waits_for_gpus_of_its_instance_types_type(
    make_backend: Callable[..., LocalBackend], tmp_path: Path
) -> None:
    h100 = (GpuInfo(0, "NVIDIA H100 80GB HBM3", 80 * GiB),)
    backend = make_backend(host=HostCapacity(cpu_millicores=8000, memory_bytes=64 * GiB, gpus=h100))

    backend.start(fake_spec(tmp_path, "r-t4", resources=Resources(gpus=1, gpu_type="nvidia-tesla-t4")))

    pending = wait_phase(backend, "r-t4", ReplicaPhase.PENDING)
    assert pending.reason == "needs 1 nvidia-tesla-t4 GPU; this machine has 1 nvidia-h100 (in use: 0)"
    on_h100 = Resources(gpus=1, gpu_type="nvidia-h100")
    status = start_running(backend, fake_spec(tmp_path, "r-h100", resources=on_h100))
    assert status.url is not None
    assert get(status.url)["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    still = status_of(backend, "r-t4")
    assert still is not None and still.phase is ReplicaPhase.PENDING
    assert still.reason == "needs 1 nvidia-tesla-t4 GPU; this machine has 1 nvidia-h100 (in use: 1)"
    backend.stop("r-h100")
    wait_gone(backend, "r-h100")
    # An H100 set free is still not a T4: the replica keeps waiting, with the first reason again.
    wait_for(lambda: status_of(backend, "r-t4") == pending, "r-t4 pending with the H100 free")


def test_a_new_backend_adopts_running_replicas(
    make_backend: Callable[..., LocalBackend], tmp_path: Path, trees: Trees
) -> None:
    first = make_backend()
    kept = start_running(first, fake_spec(tmp_path, "r-kept"))
    doomed = start_running(first, fake_spec(tmp_path, "r-doomed"))
    kept_tree, doomed_tree = trees.of(kept), trees.of(doomed)
    first.close(stop_replicas=False)
    shim_of(doomed_tree).send_signal(signal.SIGKILL)  # dies while no Tiffin watches
    assert_all_gone(doomed_tree)
    assert alive(kept_tree) == kept_tree

    second = make_backend()

    adopted = status_of(second, "r-kept")
    assert adopted is not None and adopted.pid == kept.pid and adopted.url == kept.url
    assert adopted.phase in (ReplicaPhase.STARTING, ReplicaPhase.RUNNING)
    assert wait_phase(second, "r-kept", ReplicaPhase.RUNNING).pid == kept.pid
    dead = status_of(second, "r-doomed")
    assert dead is not None and dead.phase is ReplicaPhase.FAILED and dead.reason
    second.forget("r-doomed")
    assert not (tmp_path / "replicas" / "r-doomed").exists()
    second.stop("r-kept")
    wait_gone(second, "r-kept")
    assert_all_gone(kept_tree)


def test_replicas_outlive_a_killed_tiffin_and_are_adopted(
    make_backend: Callable[..., LocalBackend], tmp_path: Path, fake_replica: Path, trees: Trees
) -> None:
    stand_in, ready = tmp_path / "tiffin_stand_in.py", tmp_path / "ready"
    stand_in.write_text(TIFFIN_STAND_IN)
    flags = tmp_path / "flags" / "r-orphan"
    flags.mkdir(parents=True)
    arguments = [tmp_path / "replicas", fake_replica, flags, ready]
    tiffin = subprocess.Popen([sys.executable, str(stand_in), *map(str, arguments)])
    try:
        wait_for(lambda: ready.exists() or tiffin.poll() is not None, "the stand-in to start a replica")
        assert ready.exists(), "the stand-in Tiffin exited early"
    finally:
        tiffin.kill()
        tiffin.wait()
    record = read_json(tmp_path / "replicas" / "r-orphan" / "replica.json")

    backend = make_backend()

    adopted = wait_phase(backend, "r-orphan", ReplicaPhase.RUNNING)
    assert adopted.pid == record["pid"]
    processes = trees.of(adopted)
    assert len(workers_of(processes)) == 1
    backend.stop("r-orphan")
    wait_gone(backend, "r-orphan")
    assert_all_gone(processes)


def test_subreaper_fallback_owns_the_tree(
    make_backend: Callable[..., LocalBackend], tmp_path: Path, trees: Trees
) -> None:
    backend = make_backend(isolation=Isolation.SUBREAPER)
    crashed = trees.of(start_running(backend, fake_spec(tmp_path, "r-sub-crash")))
    stopped = trees.of(start_running(backend, fake_spec(tmp_path, "r-sub-stop")))
    killed = trees.of(start_running(backend, fake_spec(tmp_path, "r-sub-shim")))
    wait_for((tmp_path / "replicas" / "r-sub-shim" / "tree.json").exists, "the recorded tree")

    supervisor_of(crashed).send_signal(signal.SIGKILL)
    backend.stop("r-sub-stop")
    shim_of(killed).send_signal(signal.SIGKILL)

    assert wait_phase(backend, "r-sub-crash", ReplicaPhase.FAILED).reason == "killed by SIGKILL"
    assert "shim died" in wait_phase(backend, "r-sub-shim", ReplicaPhase.FAILED).reason
    wait_gone(backend, "r-sub-stop")
    assert_all_gone(crashed + stopped + killed)


def test_real_bentoml_service_tree_is_owned(
    make_backend: Callable[..., LocalBackend], tmp_path: Path, trees: Trees
) -> None:
    pytest.importorskip("bentoml")
    project = tmp_path / "echo"
    project.mkdir()
    (project / "service.py").write_text(ECHO_SERVICE)
    (project / "bentofile.yaml").write_text('service: "service:Echo"\n')

    def materialize(bento: BentoRef) -> Materialized:
        return Materialized(project, Path(sys.executable))

    backend = make_backend(command=None, stop_grace_s=10.0, materialize=materialize)
    spec = ReplicaSpec("r-bento", "d1", "Echo", "r1", BentoRef("echo:1"))

    began = time.monotonic()
    backend.start(spec)
    status = wait_phase(backend, "r-bento", ReplicaPhase.RUNNING, timeout=BENTOML_DEADLINE_S)
    ready_s = time.monotonic() - began
    assert status.url is not None
    assert httpx.get(status.url + "/readyz", timeout=5.0, trust_env=False).status_code == 200
    answer = httpx.post(status.url + "/echo", json={"text": "hi"}, timeout=5.0, trust_env=False)
    assert answer.text == "hi"
    processes = wait_for(lambda: _with_two_workers(trees.of(status)), "two bentoml workers")

    began = time.monotonic()
    backend.stop("r-bento")
    wait_gone(backend, "r-bento")
    assert_all_gone(processes)
    print(f"\nbentoml Echo: start->RUNNING {ready_s:.2f} s, stop {time.monotonic() - began:.2f} s")


def _with_two_workers(processes: list[psutil.Process]) -> list[psutil.Process] | None:
    return processes if len(workers_of(processes)) >= 2 else None
