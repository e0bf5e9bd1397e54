"""A step from 0 to N requests/s on an autoscaled deployment: time to enough replicas, failures, latency.

How long after the step the replicas the load needs are ready, and whether any request fails meanwhile.

Run: `.venv/bin/python -m bench.autoscale [--rate 40] [--seconds 40] [--min 0] [--work-s 0.02]
[--no-warm-up]` (or `.venv/bin/python bench/autoscale.py ...`).

It starts a real `tiffin up` on a fresh TIFFIN_HOME with a 2 s autoscaling period and a 10 s window,
and deploys a one-Service bento (`bentoml deploy`) whose API sleeps `--work-s` (default 20 ms, without
using the CPU) with `min_replicas` 0 (default; or `--min 1`), `max_replicas` 4 and
`scaling.policy.metrics: [{type: qps, value: 10}]`. One warm-up request first starts a replica (unless
`--no-warm-up`): the first start of a freshly built environment compiles its bytecode and takes about
twice as long, a one-off cost that would otherwise dominate the step. Once the deployment is idle
(scaled to zero with no replica left, or its min replicas ready), an open-loop generator (asyncio +
httpx, one client) sends `--rate` requests/s on a fixed schedule, whatever the answers, for
`--seconds`, then waits for the last answers. Meanwhile it polls the deployment's replicas every 0.2 s.

It prints: the seconds from the step until the required replicas (ceil(rate / 10), at most max) are
ready (the API's count), with the changes of wanted and ready replicas and the scaling events; the
failed requests out of those sent (target: none), by status or exception; p50/p99 latency (from sending
to the answer, successful requests) of the requests due in the first 5 s and in the last 10 s; how
late the generator sent (so a busy machine that delays the schedule shows); how long the API took to
answer the polls; and the CPU seconds used during the step by `tiffin up`, by the replicas and by the
generator. Every process it starts is stopped at the end, also on Ctrl-C, SIGTERM or an error.
"""

import argparse
import asyncio
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bentoml_cli import BentomlCli, write_project
from tests.support.server import TiffinServer

from bench.cleanup import catch_signals, scratch
from bench.polling import deployment_api, epoch, wait_for

TOKEN = "tfn_bench_admin"
NAME = "bench-autoscale"
SERVICE = "Surge"  # not an emoji code: rich would render e.g. ":sleepy:" and break `bentoml build -o tag`
SETTINGS = {"TIFFIN_AUTOSCALE_PERIOD_S": "2", "TIFFIN_AUTOSCALE_WINDOW_S": "10"}
MAX_REPLICAS = 4
QPS_TARGET = 10
DEPLOY_TIMEOUT_S = 300
IDLE_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 120.0
POLL_S = 0.2
FIRST_S, LAST_S = 5.0, 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)
SOURCE = """
import asyncio

import bentoml


@bentoml.service
class Surge:
    @bentoml.api
    async def work(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"
"""


@dataclass(frozen=True)
class Options:
    rate: float
    seconds: float
    min_replicas: int
    work_s: float
    warm_up: bool

    @property
    def required(self) -> int:
        return min(math.ceil(self.rate / QPS_TARGET), MAX_REPLICAS)


@dataclass(frozen=True)
class Sent:
    """One request: when it was sent (seconds after the step), how late, how long, and its outcome."""

    at: float
    late: float  # behind its schedule (the generator's own delay)
    latency: float
    outcome: str  # the status code, or the exception's class name


@dataclass(frozen=True)
class Sample:
    at: float  # seconds after the step
    answer_s: float  # how long the API took to answer
    wanted: int
    ready: int


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (user + system) used during the step."""

    tiffin: float  # the `tiffin up` process: API, gateway, reconciler
    replicas: float  # its descendants: launchers, shims, bentoml servers and workers
    generator: float  # this process: the load generator and the API poller


@dataclass
class Run:
    sent: list[Sent] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # scaling events after the step
    cpu: CpuUse = CpuUse(0, 0, 0)


def counts(body: Any) -> tuple[int, int]:
    """(wanted, ready) replicas of the Service in a `/replicas` answer."""
    scale = (body.get("services") or {}).get(SERVICE)
    if scale is not None:
        return int(scale["replicas"]), int(scale["ready"])
    running = sum(r["state"] == "running" for r in body["items"])
    return -1, running  # an API without per-Service counts: ready replicas only


def idle(server: TiffinServer, options: Options) -> bool:
    """At zero with no replica left, or exactly the min replicas, all ready."""
    status, items = deployment_api(server, NAME)["status"], deployment_api(server, NAME, "/replicas")["items"]
    if options.min_replicas == 0:
        return status == "scaled-to-zero" and not items
    ready = [r for r in items if r["state"] == "running"]
    return status == "running" and len(ready) == len(items) == options.min_replicas


def deploy(server: TiffinServer, root: Path, options: Options) -> str:
    """Build and deploy the bento; returns the deployment URL."""
    cli = BentomlCli(home=root / "bentoml")
    cli.login(server.endpoint, server.token)
    tag = cli.build(write_project(root / "project", SOURCE, SERVICE))
    scaling = {
        "min_replicas": options.min_replicas,
        "max_replicas": MAX_REPLICAS,
        "policy": {"metrics": [{"type": "qps", "value": QPS_TARGET}]},
    }
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump({"name": NAME, "bento": tag, "services": {SERVICE: {"scaling": scaling}}})
    )
    cli.run("deploy", "-f", str(config), "--timeout", str(DEPLOY_TIMEOUT_S))
    url: str = deployment_api(server, NAME)["urls"][0]
    return url


# --- the step ------------------------------------------------------------------------------------


async def one(client: httpx.AsyncClient, url: str, body: dict[str, float], late: float, step: float) -> Sent:
    started = time.monotonic()
    try:
        outcome = str((await client.post(f"{url}/work", json=body)).status_code)
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return Sent(started - step, late, time.monotonic() - started, outcome)


async def generate(url: str, options: Options, step: float) -> list[Sent]:
    """Open loop: request i goes at step + i / rate, whatever the earlier ones are doing."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
    body = {"seconds": options.work_s}
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        tasks = []
        for number in range(int(options.rate * options.seconds)):
            due = step + number / options.rate
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            late = time.monotonic() - due
            tasks.append(asyncio.create_task(one(client, url, body, late, step)))
        return list(await asyncio.gather(*tasks))


async def watch(server: TiffinServer, step: float, stop: asyncio.Event, samples: list[Sample]) -> None:
    async with httpx.AsyncClient(
        base_url=server.endpoint, headers={"X-YATAI-API-TOKEN": server.token}, timeout=30
    ) as client:
        while not stop.is_set():
            asked = time.monotonic()
            try:
                response = await client.get(f"/api/v2/deployments/{NAME}/replicas")
                answered = time.monotonic()
                samples.append(Sample(asked - step, answered - asked, *counts(response.json())))
            except httpx.HTTPError:
                pass  # a missed sample; the next one will do
            await asyncio.sleep(POLL_S)


async def step_load(server: TiffinServer, url: str, options: Options, run: Run) -> None:
    """The load and the poller; Ctrl-C or SIGTERM cancels both (and `asyncio.run` raises CancelledError)."""
    this, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert this is not None
    for signum in SIGNALS:
        loop.add_signal_handler(signum, this.cancel)
    step, stop = time.monotonic(), asyncio.Event()
    watcher = asyncio.create_task(watch(server, step, stop, run.samples))
    try:
        run.sent = await generate(url, options, step)
    finally:
        stop.set()
        await watcher


Times = dict[tuple[int, float], float]  # (pid, create time) -> CPU seconds


def cpu_times(processes: Sequence[psutil.Process]) -> Times:
    found = {}
    for process in processes:
        with suppress(psutil.Error), process.oneshot():
            times = process.cpu_times()
            found[(process.pid, process.create_time())] = times.user + times.system
    return found


def cpu_snapshot(server: TiffinServer) -> tuple[Times, Times, Times]:
    """CPU times now of `tiffin up`, of its descendants, and of this process."""
    assert server.process is not None
    tiffin = psutil.Process(server.process.pid)
    return cpu_times([tiffin]), cpu_times(tiffin.children(recursive=True)), cpu_times([psutil.Process()])


def cpu_use(before: tuple[Times, Times, Times], after: tuple[Times, Times, Times]) -> CpuUse:
    tiffin, replicas, generator = (
        sum(seconds - old.get(key, 0.0) for key, seconds in new.items())
        for old, new in zip(before, after, strict=True)
    )
    return CpuUse(tiffin, replicas, generator)


def warm_up(url: str) -> float:
    """One request, so that the step does not pay the first start of a freshly built environment
    (Python compiles the environment's bytecode then, which doubles that start)."""
    started = time.monotonic()
    response = httpx.post(f"{url}/work", json={"seconds": 0}, timeout=REQUEST_TIMEOUT_S)
    if response.status_code != 200:
        raise SystemExit(f"the warm-up request got {response.status_code}: {response.text[:300]}")
    return time.monotonic() - started


def scaling_events(server: TiffinServer, since: float) -> list[tuple[float, str]]:
    items = deployment_api(server, NAME, "/events?limit=1000")["items"]
    stamped = [(epoch(e["time"]) - since, str(e["message"])) for e in items if e["kind"] == "scaling"]
    return [(at, message) for at, message in stamped if at >= -0.05]


def measure(root: Path, options: Options) -> Run:
    server = TiffinServer(home=root / "home", token=TOKEN, extra_env=SETTINGS)
    run = Run()
    try:
        server.start()
        url = deploy(server, root, options)
        mode = (
            "on-demand: scales to zero, requests wait at the gateway"
            if options.min_replicas == 0
            else "online service: requests go straight to ready replicas"
        )
        print(
            f"deployment {NAME} at {url}: Service {SERVICE}, min_replicas {options.min_replicas} ({mode}),"
            f" max_replicas {MAX_REPLICAS}, qps target {QPS_TARGET}; autoscaling period"
            f" {SETTINGS['TIFFIN_AUTOSCALE_PERIOD_S']} s, window {SETTINGS['TIFFIN_AUTOSCALE_WINDOW_S']} s",
            flush=True,
        )
        wait_for(lambda: idle(server, options), "the deployment to be idle", IDLE_TIMEOUT_S, POLL_S)
        if options.warm_up:
            seconds = warm_up(url)
            print(
                f"warm-up request: {seconds:.2f} s; waiting for the deployment to be idle again", flush=True
            )
            wait_for(lambda: idle(server, options), "the deployment to be idle again", IDLE_TIMEOUT_S, POLL_S)
        print(f"step: 0 -> {options.rate:g} requests/s for {options.seconds:g} s", flush=True)
        started_at, before = time.time(), cpu_snapshot(server)
        try:
            asyncio.run(step_load(server, url, options, run))
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            catch_signals()
        run.cpu = cpu_use(before, cpu_snapshot(server))
        run.events = scaling_events(server, started_at)
    finally:
        server.teardown()
    return run


# --- the report ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latencies(sent: Sequence[Sent], start: float, end: float) -> str:
    ok = [s.latency for s in sent if start <= s.at - s.late < end and s.outcome == "200"]
    if not ok:
        return "no successful request"
    return f"p50 {percentile(ok, 0.5):6.3f} s   p99 {percentile(ok, 0.99):6.3f} s   ({len(ok)} requests)"


def changes(samples: Sequence[Sample]) -> str:
    """Each change of (wanted, ready), e.g. "0.2 s 1/0, 1.8 s 1/1"."""
    shown, previous = [], None
    for sample in samples:
        if (sample.wanted, sample.ready) != previous:
            previous = (sample.wanted, sample.ready)
            shown.append(f"{sample.at:.1f} s {sample.wanted}/{sample.ready}")
    return ", ".join(shown)


def report(run: Run, options: Options) -> None:
    reached = next((s.at for s in run.samples if s.ready >= options.required), None)
    most = max((s.ready for s in run.samples), default=0)
    required = options.required
    print(f"required replicas: ceil({options.rate:g} / {QPS_TARGET}), at most {MAX_REPLICAS}: {required}")
    if reached is not None:
        print(f"step -> {required} replicas ready: {reached:6.2f} s (the API polled every {POLL_S:g} s)")
    else:
        print(f"step -> {required} replicas ready: NOT reached in {options.seconds:g} s (at most {most})")
    print(f"  wanted/ready over time: {changes(run.samples)}")
    for at, message in run.events:
        print(f"  {at:6.2f} s  {message}")
    failed = Counter(s.outcome for s in run.sent if s.outcome != "200")
    breakdown = ", ".join(f"{outcome}: {count}" for outcome, count in failed.most_common()) or "none"
    print(f"failed/sent: {sum(failed.values())}/{len(run.sent)} (target: none)   by outcome: {breakdown}")
    last = options.seconds - LAST_S
    print(f"latency, due in the first {FIRST_S:g} s: {latencies(run.sent, 0, FIRST_S)}")
    print(f"latency, due in the last {LAST_S:g} s:  {latencies(run.sent, last, options.seconds)}")
    late = [s.late for s in run.sent]
    print(f"generator lateness: p99 {percentile(late, 0.99) * 1000:.1f} ms, max {max(late) * 1000:.1f} ms")
    answers = [s.answer_s for s in run.samples]
    print(f"API /replicas answer time: p50 {percentile(answers, 0.5):.3f} s, max {max(answers):.3f} s")
    cpu, cores = run.cpu, len(psutil.Process().cpu_affinity() or [0])
    print(
        f"CPU seconds during the step: tiffin up {cpu.tiffin:.1f}, replicas {cpu.replicas:.1f}, this"
        f" generator {cpu.generator:.1f} (of {cores} cores x {options.seconds:g} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second after the step")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the load lasts")
    parser.add_argument(
        "--min", type=int, default=0, choices=(0, 1), help="min_replicas", dest="min_replicas"
    )
    parser.add_argument("--work-s", type=float, default=0.02, help="seconds each request sleeps in the API")
    parser.add_argument(
        "--no-warm-up", action="store_true", help="step on a never-started environment (no warm-up request)"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds < LAST_S:
        parser.error(f"--rate must be positive and --seconds at least {LAST_S:g}")
    options = Options(args.rate, args.seconds, args.min_replicas, args.work_s, not args.no_warm_up)
    with scratch() as root:
        run = measure(root, options)
    report(run, options)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")
