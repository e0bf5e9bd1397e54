"""Cold start: the first request on a scaled-to-zero deployment vs a bare replica's time to ready.

From sending the first request on a scaled-to-zero deployment to its response, against the time the
same bentoml server takes to become ready when started by hand, measured in one run.

Run: `.venv/bin/python -m bench.coldstart [--repeats 3]` (or `.venv/bin/python bench/coldstart.py`).

It starts a real `tiffin up` on a fresh TIFFIN_HOME with a 1 s autoscaling period and a 2 s window, and
deploys a trivial one-Service bento with `min_replicas: 0` (`bentoml deploy`). Then, `repeats` times,
it measures a pair, alternating which of the two goes first so that machine load affects both alike:

* scaled to zero: once the deployment is `scaled-to-zero` with no replica left, one `POST /ping` to
  the deployment URL, timed from sending it to its response (the gateway holds it while a replica
  starts). The breakdown, relative to sending it, comes from the deployment's events (stamped when the
  reconcile step that noticed them stored them): the scaling "0 → 1", the replica started, the
  replica ready; and from the processes: when the replica's launcher and its bentoml server were
  created (process start times, 10 ms resolution, corrected by the skew of psutil's boot time).
* bare: the command Tiffin runs for a replica (`tiffin.backends.launch.default_command`: the bento's
  built environment's Python, `-m bentoml_cli._internal.start start-http-server <bento_dir>
  --service-name S ...`) with the environment a replica gets (`launch.replica_env`: a fresh
  BENTOML_HOME, TMPDIR and Prometheus directory), in the bento directory, timed from spawning it to
  the first 200 from its `/readyz` (polled every 10 ms); then it is stopped. It too starts only once
  the deployment is back at zero, so no Tiffin replica runs or stops meanwhile.

One unmeasured round of each comes first: the first start of a freshly built environment compiles its
bytecode and takes about twice as long; it also checks that the bare command is the one a live
replica runs. For each pair it prints both times, their ratio and the target (scaled to zero ≤ 1.3 ×
bare + 0.2 s), then the medians. Every process it starts (server, replicas, bare servers) is stopped
at the end, also on Ctrl-C, SIGTERM or an error.
"""

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bentoml_cli import PING_SOURCE, BentomlCli, write_project
from tests.support.server import TiffinServer, free_port

from bench.cleanup import scratch
from bench.polling import deployment_api, epoch, wait_for
from tiffin.backends import launch
from tiffin.backends.ledger import Allocation
from tiffin.backends.protocol import BentoRef, Materialized, ReplicaSpec
from tiffin.backends.replica_dir import ReplicaPaths
from tiffin.builder.builder import Builder
from tiffin.builder.envcache import EnvCache
from tiffin.builder.envspec import env_key, read_env_spec

TOKEN = "tfn_bench_admin"
NAME = "bench-coldstart"
SERVICE = "Rouse"  # not an emoji code: rich would render ":sleepy:" and break `bentoml build -o tag`
SETTINGS = {"TIFFIN_AUTOSCALE_PERIOD_S": "1", "TIFFIN_AUTOSCALE_WINDOW_S": "2"}
DEPLOY_TIMEOUT_S = 300
WAIT_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 120.0
READY_POLL_S = 0.01
API_POLL_S = 0.2
STOP_GRACE_S = 10.0
TARGET_FACTOR, TARGET_EXTRA_S = 1.3, 0.2


@dataclass(frozen=True)
class Breakdown:
    """Seconds after the request was sent (None: not seen)."""

    decided: float | None  # the scaling event "0 → 1"
    started: float | None  # the replica's "started" event
    launcher: float | None  # the replica's launcher process was created
    server: float | None  # its bentoml server process was created
    ready: float | None  # the replica's "is ready" event


@dataclass(frozen=True)
class Pair:
    bare: float
    woken: float
    breakdown: Breakdown

    @property
    def ratio(self) -> float:
        return self.woken / self.bare


def quiet(server: TiffinServer) -> None:
    """Wait until the deployment is `scaled-to-zero` with no replica left, not even one stopping."""

    def at_zero() -> bool:
        return (
            deployment_api(server, NAME)["status"] == "scaled-to-zero"
            and not deployment_api(server, NAME, "/replicas")["items"]
        )

    wait_for(at_zero, "the deployment to scale to zero with no replica left", WAIT_TIMEOUT_S, API_POLL_S)


def deploy(server: TiffinServer, root: Path) -> tuple[str, str]:
    """Deploy the bento with min 0, max 1; returns (bento tag, deployment URL)."""
    cli = BentomlCli(home=root / "bentoml")
    cli.login(server.endpoint, server.token)
    tag = cli.build(write_project(root / "project", PING_SOURCE.format(service=SERVICE), SERVICE))
    scaling = {"min_replicas": 0, "max_replicas": 1}
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump({"name": NAME, "bento": tag, "services": {SERVICE: {"scaling": scaling}}})
    )
    cli.run("deploy", "-f", str(config), "--timeout", str(DEPLOY_TIMEOUT_S))
    url: str = deployment_api(server, NAME)["urls"][0]
    return tag, url


# --- the bare replica ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bare:
    """The replica spec Tiffin would use, and the bento directory and environment it built."""

    spec: ReplicaSpec
    bento: Materialized


def bare_spec(home: Path, tag: str) -> Bare:
    builder = Builder(home / "builds")
    bento_dir = builder.bento_dir(tag)
    python = EnvCache(builder.root).path(env_key(read_env_spec(bento_dir))) / "bin" / "python"
    return Bare(ReplicaSpec("bare", NAME, SERVICE, "bare", BentoRef(tag)), Materialized(bento_dir, python))


def server_process(launcher_pid: int) -> psutil.Process | None:
    """The bentoml server in a replica's process tree (the shim's child)."""
    with suppress(psutil.Error):
        root = psutil.Process(launcher_pid)
        for process in [root, *root.children(recursive=True)]:
            with suppress(psutil.Error):
                if process.cmdline()[1:4] == ["-m", "bentoml_cli._internal.start", "start-http-server"]:
                    return process
    return None


def check_command(server: TiffinServer, bare: Bare) -> str:
    """Whether the bare command is the one the live replica runs (ports aside); a line to print."""
    pids = [
        r["pid"]
        for r in deployment_api(server, NAME, "/replicas")["items"]
        if r["state"] == "running" and r["pid"]
    ]
    found = server_process(pids[0]) if pids else None
    if found is None:
        return "could not read a live replica's command line to compare"
    live = found.cmdline()
    ours = launch.default_command(bare.spec, bare.bento, "127.0.0.1", int(live[live.index("--port") + 1]))
    return "same as the live replica's" if ours == live else f"DIFFERS from the live replica's: {live}"


def stop_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (bentoml stops its workers), then SIGKILL whatever of its tree is left."""
    family: list[psutil.Process] = []
    with suppress(psutil.Error):
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_S)
    alive = [p for p in family if p.is_running()]
    for leftover in alive:
        with suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    process.wait()


@contextmanager
def spawned(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_tree(process)


def bare_ready(server: TiffinServer, bare: Bare, scratch: Path) -> float:
    """Seconds from spawning the replica command to its first `/readyz` 200, started once the deployment
    is back at zero (so no replica of it runs or stops meanwhile)."""
    quiet(server)
    paths = ReplicaPaths(Path(tempfile.mkdtemp(prefix="bare-", dir=scratch)) / "replica")
    launch.prepare(paths, ())
    env = launch.replica_env(bare.spec, paths, Allocation())
    port = free_port()
    with httpx.Client(timeout=1) as client:
        started = time.monotonic()
        command = launch.default_command(bare.spec, bare.bento, "127.0.0.1", port)
        with spawned(command, env, bare.bento.bento_dir, paths.output_log) as process:
            while time.monotonic() - started < WAIT_TIMEOUT_S:
                if process.poll() is not None:
                    raise SystemExit(f"the bare replica exited {process.returncode}; see {paths.output_log}")
                with suppress(httpx.HTTPError):
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        return time.monotonic() - started
                time.sleep(READY_POLL_S)
    raise SystemExit(f"the bare replica was not ready within {WAIT_TIMEOUT_S} s; see {paths.output_log}")


# --- the scaled-to-zero deployment ---------------------------------------------------------------


def start_time_skew() -> float:
    """How far psutil's process start times are off this clock (it derives them from the boot time,
    which Linux gives in whole seconds): the start time of a child minus when it was spawned."""
    spawned_at = time.time()
    with subprocess.Popen(["sleep", "5"]) as child:
        created = psutil.Process(child.pid).create_time()
        child.kill()
    return created - spawned_at


def woken(server: TiffinServer, url: str, skew: float) -> tuple[float, Breakdown]:
    """Seconds from sending the first request on the scaled-to-zero deployment to its response."""
    quiet(server)
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        sent_at, started = time.time(), time.monotonic()
        response = client.post(f"{url}/ping", json={})
        seconds = time.monotonic() - started
    if response.status_code != 200:
        raise SystemExit(f"the first request got {response.status_code}: {response.text[:300]}")
    return seconds, breakdown(server, sent_at, skew)


def breakdown(server: TiffinServer, sent_at: float, skew: float) -> Breakdown:
    events = [
        e
        for e in deployment_api(server, NAME, "/events?limit=1000")["items"]
        if epoch(e["time"]) >= sent_at - 0.05
    ]

    def first(kind: str, text: str) -> float | None:
        return next(
            (epoch(e["time"]) - sent_at for e in events if e["kind"] == kind and text in e["message"]), None
        )

    running = [
        r for r in deployment_api(server, NAME, "/replicas")["items"] if r["state"] == "running" and r["pid"]
    ]
    launcher = bentoml = None
    if running:
        with suppress(psutil.Error):
            launcher = psutil.Process(running[0]["pid"]).create_time() - skew - sent_at
        found = server_process(running[0]["pid"])
        with suppress(psutil.Error):
            bentoml = found.create_time() - skew - sent_at if found is not None else None
    return Breakdown(
        first("scaling", "0 → 1"),
        first("replica", "started"),
        launcher,
        bentoml,
        first("replica", "is ready"),
    )


# --- the measurement and the report --------------------------------------------------------------


def measure(root: Path, repeats: int) -> list[Pair]:
    server = TiffinServer(home=root / "home", token=TOKEN, extra_env=SETTINGS)
    try:
        server.start()
        tag, url = deploy(server, root)
        replica, skew = bare_spec(server.home, tag), start_time_skew()
        print(f"deployment {NAME} at {url}: Service {SERVICE}, min 0, max 1; bento {tag}", flush=True)
        warm_woken, _ = woken(server, url, skew)
        print(f"bare command: {check_command(server, replica)}", flush=True)
        warm_bare = bare_ready(server, replica, root)
        print(f"warm-up (not counted): bare {warm_bare:.2f} s, scaled to zero {warm_woken:.2f} s", flush=True)
        pairs = []
        for number in range(repeats):
            if number % 2 == 0:
                bare = bare_ready(server, replica, root)
                seconds, parts = woken(server, url, skew)
            else:
                seconds, parts = woken(server, url, skew)
                bare = bare_ready(server, replica, root)
            pairs.append(Pair(bare, seconds, parts))
            print(f"  pair {number + 1} done", flush=True)
    finally:
        server.teardown()
    return pairs


def _at(value: float | None) -> str:
    return f"{value:+.2f}" if value is not None else "n/a"


BREAKDOWN = ("0→1 event", "started event", "launcher created", "bentoml created", "ready event", "response")


def report(pairs: list[Pair]) -> None:
    print("first request at zero -> its response, vs a bare replica's spawn -> /readyz 200:")
    for number, pair in enumerate(pairs, 1):
        print(
            f"  run {number}: scaled to zero {pair.woken:5.2f} s   bare {pair.bare:5.2f} s   ratio"
            f" {pair.ratio:4.2f}   target {_target(pair.woken, pair.bare)}"
        )
    bare = statistics.median(p.bare for p in pairs)
    woke = statistics.median(p.woken for p in pairs)
    print(
        f"  median: scaled to zero {woke:5.2f} s   bare {bare:5.2f} s   ratio"
        f" {statistics.median(p.ratio for p in pairs):4.2f}   target {_target(woke, bare)}"
    )
    print("where the time goes, in seconds after the request was sent (events are stamped when stored):")
    print("        " + "".join(f"{title:>18}" for title in BREAKDOWN))
    for number, pair in enumerate(pairs, 1):
        part = pair.breakdown
        cells = (part.decided, part.started, part.launcher, part.server, part.ready, pair.woken)
        print(f"  run {number}:" + "".join(f"{_at(cell):>18}" for cell in cells))


def _target(woken: float, bare: float) -> str:
    """The target, 1.3 x bare + 0.2 s, and whether `woken` meets it."""
    target = TARGET_FACTOR * bare + TARGET_EXTRA_S
    verdict = "ok" if woken <= target else "MISSED"
    return f"<= {TARGET_FACTOR:g} x bare + {TARGET_EXTRA_S:g} s = {target:5.2f} s: {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of measurements")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    with scratch() as root:
        pairs = measure(root, args.repeats)
    report(pairs)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")
