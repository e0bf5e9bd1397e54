"""How fast a deployment heals, under steady load: a SIGKILLed replica, and a SIGKILLed `tiffin up`.

Run: `.venv/bin/python -m bench.reliability [--repeats 3]` (or `.venv/bin/python bench/reliability.py`).

It starts a real `tiffin up` on a fresh TIFFIN_HOME, deploys a trivial one-Service bento with 2
replicas (`bentoml deploy`), and keeps one client thread calling the deployment's URL back to back
(10 ms apart). Then, `repeats` times each, and from a steady state every time (2 replicas running, the
last 20 calls answered):

* replica: SIGKILL one replica's launcher (the root of its process tree, the PID the API shows) and
  time until the API lists 2 running replicas again, the killed one gone. This includes the crash
  backoff (1 s after a first failure) and the new replica's cold start.
* tiffin: SIGKILL `tiffin up`, start it again on the same TIFFIN_HOME and port, and time from that
  command to the first successful call through the deployment URL (the replicas keep running; the
  deployment's port is the gateway's, inside `tiffin up`). Also: when the API answered (seen by
  `TiffinServer`, which polls every 0.1 s), and whether the running replicas have the same PIDs as
  before the kill (adopted rather than restarted). While `tiffin up` is down every call is refused at
  once, so failed/sent there counts the client's retries; the time is what matters.

For each it prints every run, failed/sent calls in the timed period, and the median. Every process it
starts (servers, replicas) is stopped at the end, also on Ctrl-C, SIGTERM or an error.
"""

import argparse
import os
import signal
import statistics
import sys
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bentoml_cli import PING_SOURCE, BentomlCli, write_project
from tests.support.load import in_background
from tests.support.server import TiffinServer

from bench.cleanup import scratch
from bench.polling import deployment_api, wait_for

TOKEN = "tfn_bench_admin"
NAME = "bench-heal"
REPLICAS = 2
DEPLOY_TIMEOUT_S = 300
HEAL_TIMEOUT_S = 120.0
STEADY_CALLS = 20


@dataclass
class TimedLoad:
    """One client calling `url` back to back; records (start, end, succeeded) per call."""

    url: str
    calls: list[tuple[float, float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.post(f"{self.url}/ping", json={}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.calls.append((started, time.monotonic(), ok))
                time.sleep(0.01)

    def count(self, start: float, end: float) -> tuple[int, int]:
        """(failed, sent) among the calls that ended in [start, end]."""
        ended = [ok for _, done, ok in list(self.calls) if start <= done <= end]
        return ended.count(False), len(ended)

    def first_success_after(self, moment: float) -> float | None:
        """When the first successful call that started at or after `moment` ended, if any has."""
        return next((done for began, done, ok in list(self.calls) if ok and began >= moment), None)

    def steady(self) -> bool:
        recent = self.calls[-STEADY_CALLS:]
        return len(recent) == STEADY_CALLS and all(ok for _, _, ok in recent)


def running_load(url: str) -> AbstractContextManager[TimedLoad]:
    return in_background(TimedLoad(url))


@dataclass
class Servers:
    """Every `tiffin up` started on one TIFFIN_HOME; `close` stops them all and any replica left."""

    home: Path
    started: list[TiffinServer] = field(default_factory=list)

    def start(self, port: int | None = None) -> TiffinServer:
        server = TiffinServer(home=self.home, token=TOKEN)
        server.port = port or server.port
        self.started.append(server)  # before start(): an interrupted start is still cleaned up
        return server.start()

    def close(self) -> None:
        for server in reversed(self.started):
            server.teardown()


@dataclass(frozen=True)
class ReplicaRun:
    seconds: float
    failed: int
    sent: int


@dataclass(frozen=True)
class RestartRun:
    seconds: float
    api_seconds: float
    failed: int
    sent: int
    adopted: bool


def replicas(server: TiffinServer) -> list[dict[str, Any]]:
    """The running replicas, as the API lists them."""
    return [r for r in deployment_api(server, NAME, "/replicas")["items"] if r["state"] == "running"]


def steady(server: TiffinServer, load: TimedLoad) -> bool:
    status = deployment_api(server, NAME)["status"]
    return status == "running" and len(replicas(server)) == REPLICAS and load.steady()


def deploy(server: TiffinServer, root: Path) -> str:
    """Deploy the bento with 2 replicas; returns the deployment URL."""
    cli = BentomlCli(home=root / "bentoml")
    cli.login(server.endpoint, server.token)
    tag = cli.build(write_project(root / "project", PING_SOURCE.format(service="Ping"), "Ping"))
    scaling = {"min_replicas": REPLICAS, "max_replicas": REPLICAS}
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump({"name": NAME, "bento": tag, "services": {"Ping": {"scaling": scaling}}})
    )
    cli.run("deploy", "-f", str(config), "--timeout", str(DEPLOY_TIMEOUT_S))
    url: str = deployment_api(server, NAME)["urls"][0]
    return url


def kill_a_replica(server: TiffinServer, load: TimedLoad) -> ReplicaRun:
    wait_for(lambda: steady(server, load), "a steady deployment", HEAL_TIMEOUT_S)
    victim = replicas(server)[0]
    killed = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)

    def replaced() -> bool:
        running = replicas(server)
        return len(running) == REPLICAS and victim["replica"] not in {r["replica"] for r in running}

    healed = wait_for(replaced, "a replacement replica", HEAL_TIMEOUT_S)
    return ReplicaRun(healed - killed, *load.count(killed, healed))


def kill_tiffin(servers: Servers, load: TimedLoad) -> RestartRun:
    old = servers.started[-1]
    wait_for(lambda: steady(old, load), "a steady deployment", HEAL_TIMEOUT_S)
    before = sorted(r["pid"] for r in replicas(old))
    old.kill()  # SIGKILL, reaped
    restarted = time.monotonic()
    new = servers.start(port=old.port)
    api_ready = time.monotonic()
    served = wait_for(
        lambda: load.first_success_after(restarted) is not None, "traffic to resume", HEAL_TIMEOUT_S
    )
    first = load.first_success_after(restarted) or served
    failed, sent = load.count(restarted, first)
    wait_for(lambda: steady(new, load), "the restarted server's deployment to be steady", HEAL_TIMEOUT_S)
    adopted = sorted(r["pid"] for r in replicas(new)) == before
    return RestartRun(first - restarted, api_ready - restarted, failed, sent, adopted)


def report_replicas(runs: list[ReplicaRun]) -> None:
    print("SIGKILL of one replica -> the API lists 2 running replicas again (replacement ready):")
    for number, run in enumerate(runs, 1):
        print(f"  run {number}: {run.seconds:6.2f} s   failed/sent {run.failed}/{run.sent}")
    print(
        f"  median: {statistics.median(r.seconds for r in runs):6.2f} s   failed/sent"
        f" {statistics.median(r.failed for r in runs):g}/{statistics.median(r.sent for r in runs):g}"
    )


def report_restarts(runs: list[RestartRun]) -> None:
    print("SIGKILL of `tiffin up`, then `tiffin up` again -> first successful call through the URL:")
    for number, run in enumerate(runs, 1):
        print(
            f"  run {number}: {run.seconds:6.2f} s   (API answering after {run.api_seconds:5.2f} s)"
            f"   failed/sent {run.failed}/{run.sent}   same replica PIDs: {'yes' if run.adopted else 'NO'}"
        )
    print(
        f"  median: {statistics.median(r.seconds for r in runs):6.2f} s   (API answering after"
        f" {statistics.median(r.api_seconds for r in runs):5.2f} s)   failed/sent"
        f" {statistics.median(r.failed for r in runs):g}/{statistics.median(r.sent for r in runs):g}"
    )


def measure(root: Path, repeats: int) -> tuple[list[ReplicaRun], list[RestartRun]]:
    servers = Servers(root / "home")
    try:
        url = deploy(servers.start(), root)
        print(f"deployment {NAME} at {url}: Service Ping, {REPLICAS} replicas, one client", flush=True)
        with running_load(url) as load:
            replica_runs = [kill_a_replica(servers.started[-1], load) for _ in range(repeats)]
            restart_runs = [kill_tiffin(servers, load) for _ in range(repeats)]
    finally:
        servers.close()
    return replica_runs, restart_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each kind")
    args = parser.parse_args()
    with scratch() as root:
        replica_runs, restart_runs = measure(root, args.repeats)
    report_replicas(replica_runs)
    report_restarts(restart_runs)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")
