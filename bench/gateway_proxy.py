"""What the gateway costs in front of a real bentoml replica: throughput, added latency, CPU per request.

Run: `.venv/bin/python bench/gateway_proxy.py [--duration 5] [--rounds 3] [--attempts 6]`.

It starts a trivial bentoml Service (2 workers, an async JSON echo), and the gateway in a process of
its own so that process's CPU time is the gateway's alone. At concurrency 1, 8 and 64 it loads the
replica directly and through the gateway, alternately, `rounds` times, and prints medians of
requests/s, raw p50/p99, their ratios, and CPU time per request of the gateway and of the replica.

Why its own load generator rather than wrk: the replica's two workers share one listening socket, and
a burst of connections (wrk opens all of them at once) usually lands on ONE worker, so a direct run
and a gateway run compare one worker with two, by chance (ratios of 0.55 or 1.5 in one sitting). The
generator here opens its connections one at a time, so idle workers take turns accepting them (and the
gateway's pool grows the same way); each run records how the replica's CPU split between its workers
and is repeated until neither worker did more than 70% of the work. On a machine shared with other
work, a run is also repeated when processes outside the benchmark used CPU meanwhile. Its latencies
are raw (no correction for stalls). Everything started, including the replica's workers (which run
in sessions of their own), is stopped at the end.
"""

import argparse
import asyncio
import importlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tiffin.gateway import Gateway, GatewaySettings
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute

SERVICE = """
import bentoml


@bentoml.service(workers=2)
class Echo:
    @bentoml.api
    async def echo(self, text: str) -> dict:
        return {"text": text}
"""

BODY = b'{"text":"hello"}'
REQUEST = (
    b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)
CONCURRENCY = (1, 8, 64)
BALANCED = 0.7  # a run counts when no worker did more than this share of the replica's CPU work
QUIET = 0.15  # ... and when other processes on the machine used at most this many cores meanwhile
RAMP_S = 0.003  # pause between opening two connections, so idle workers take turns accepting
WARMUP_S = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the replica -------------------------------------------------------------------------------------


class ProcessTree:
    """Remembers every descendant of a process while it runs, so all of them can be stopped."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.seen: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.collect()
            self._stop.wait(0.2)

    def collect(self) -> None:
        with suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                self.seen.setdefault(proc.pid, proc)

    def workers(self) -> list[psutil.Process]:
        self.collect()
        return [proc for proc in self.seen.values() if "--worker-id" in " ".join(_cmdline(proc))]

    def stop(self) -> None:
        self.collect()
        self._stop.set()
        self._thread.join()
        alive = [proc for proc in self.seen.values() if proc.is_running()]
        for proc in alive:
            with suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, left = psutil.wait_procs(alive, timeout=5)
        for proc in left:
            with suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(left, timeout=5)
        self.process.wait(timeout=5)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@contextmanager
def bentoml_replica(workdir: Path) -> Iterator[tuple[str, ProcessTree]]:
    """A real bentoml HTTP server for SERVICE; yields its base URL and process tree."""
    (workdir / "service.py").write_text(SERVICE)
    for name in ("home", "tmp"):
        (workdir / name).mkdir(exist_ok=True)
    port = free_port()
    env = {
        **{key: value for key, value in os.environ.items() if key != "PYTHONPATH"},  # (see --loop)
        "BENTOML_HOME": str(workdir / "home"),
        "TMPDIR": str(workdir / "tmp"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    command = [sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server", "service:Echo"]
    command += ["--working-dir", str(workdir), "--host", "127.0.0.1", "--port", str(port)]
    with (workdir / "replica.log").open("wb") as log:
        tree = ProcessTree(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, tree.process, workdir / "replica.log")
            yield url, tree
        finally:
            tree.stop()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the replica exited early:\n{log.read_text()}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the replica did not become ready:\n{log.read_text()}")


# --- the gateway, in a process of its own ------------------------------------------------------------


def serve_gateway(upstream: str, port: int, loop: str) -> None:
    """Child-process mode: run a Gateway routing `port` to `upstream` until stdin closes."""
    if loop == "uvloop":  # not a dependency: for comparison, when it is importable
        importlib.import_module("uvloop").install()

    async def no_tokens(token: str) -> frozenset[str] | None:
        return None

    async def main() -> None:
        # idle upstream connections go quickly, so each run's pool is rebuilt (and re-spread over workers)
        settings = GatewaySettings(upstream_idle_timeout_s=0.5, sweep_interval_s=0.25)
        gateway = Gateway("127.0.0.1", no_tokens, settings)
        service = ServiceRoute("Echo", free_port(), (upstream,))
        await gateway.apply(
            RoutingSnapshot({"echo": DeploymentRoute("echo", port, "Echo", {"Echo": service})})
        )
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await gateway.close()

    asyncio.run(main())


@contextmanager
def gateway_process(upstream: str, loop: str) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    command = [sys.executable, __file__, "--serve-gateway", upstream, "--port", str(port), "--loop", loop]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError("the gateway process did not start")
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the load generator, in a process of its own -----------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"\r\n[Cc]ontent-[Ll]ength:[ \t]*(\d+)")


class _Window:
    """Which responses count: those completed between start and end; their raw latencies (s)."""

    def __init__(self) -> None:
        self.start = self.end = float("inf")
        self.latencies: list[float] = []
        self.errors = 0
        self.running = True


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as the previous answer is complete."""

    def __init__(self, window: _Window) -> None:
        self.window = window
        self.buffer = bytearray()
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
        total = end + 4 + (int(length[1]) if length else 0)
        if len(self.buffer) < total:
            return
        now = time.perf_counter()
        ok = self.buffer.startswith(b"HTTP/1.1 200")
        del self.buffer[:total]
        window = self.window
        if window.start <= now <= window.end:
            window.latencies.append(now - self.sent)
            window.errors += not ok
        if window.running and self.transport is not None:
            self._send()
        elif self.transport is not None:
            self.transport.close()


def run_load(url: str, concurrency: int, duration: float) -> None:
    """Child-process mode: print `start` when the measured window opens, then one JSON line of results."""
    host, port = url.removeprefix("http://").split(":")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        window = _Window()
        for _ in range(concurrency):
            await loop.create_connection(lambda: _Client(window), host, int(port))
            await asyncio.sleep(RAMP_S)
        await asyncio.sleep(WARMUP_S)
        print("start", flush=True)
        window.start = time.perf_counter()
        await asyncio.sleep(duration)
        window.end = time.perf_counter()
        window.running = False
        latencies = sorted(window.latencies)
        await asyncio.sleep(0.2)
        result = {
            "requests": len(latencies),
            "seconds": window.end - window.start,
            "p50": _percentile(latencies, 0.5),
            "p99": _percentile(latencies, 0.99),
            "errors": window.errors,
        }
        print(json.dumps(result), flush=True)

    asyncio.run(main())


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# --- the measurement ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    busiest_worker: float  # the larger worker's share of the replica's CPU time in the window
    foreign_cores: float  # CPU used by processes outside this benchmark (other users of the machine)
    gateway_cpu_us: float  # gateway CPU time per request (0 for direct runs)
    replica_cpu_us: float  # replica (both workers) CPU time per request

    def clean(self, concurrency: int) -> bool:
        shared = concurrency == 1 or self.busiest_worker <= BALANCED
        return shared and self.foreign_cores <= QUIET


@dataclass(frozen=True)
class Sample:
    gateway: float
    workers: list[float]
    ours: float
    machine: float
    at: float


@dataclass(frozen=True)
class Watched:
    """The processes whose CPU time is read: the gateway, the replica's workers, the whole benchmark."""

    gateway: psutil.Process
    workers: list[psutil.Process]
    ours: list[psutil.Process]  # every process this benchmark started (replica tree, gateway)

    def sample(self, load: psutil.Process) -> Sample:
        busy = psutil.cpu_times()
        machine = busy.user + busy.system + busy.nice + getattr(busy, "irq", 0.0)
        machine += getattr(busy, "softirq", 0.0)
        ours = sum(_cpu(proc) for proc in [*self.ours, load, psutil.Process()])
        return Sample(_cpu(self.gateway), [_cpu(w) for w in self.workers], ours, machine, time.monotonic())


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def measure_once(url: str, concurrency: int, duration: float, watched: Watched) -> Run:
    command = [sys.executable, __file__, "--load", url, "--concurrency", str(concurrency)]
    command += ["--duration", str(duration)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    load = psutil.Process(process.pid)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "start":
        raise RuntimeError("the load generator failed")
    before = watched.sample(load)
    result = json.loads(process.stdout.readline())
    after = watched.sample(load)
    process.wait()
    worker_cpu = [a - b for a, b in zip(after.workers, before.workers, strict=True)]
    foreign = (after.machine - before.machine) - (after.ours - before.ours)
    requests = max(1, result["requests"])
    return Run(
        rps=result["requests"] / result["seconds"],
        p50_ms=result["p50"] * 1e3,
        p99_ms=result["p99"] * 1e3,
        errors=result["errors"],
        busiest_worker=max(worker_cpu) / max(sum(worker_cpu), 1e-9),
        foreign_cores=max(0.0, foreign) / (after.at - before.at),
        gateway_cpu_us=(after.gateway - before.gateway) / requests * 1e6,
        replica_cpu_us=sum(worker_cpu) / requests * 1e6,
    )


def measure_clean(url: str, concurrency: int, args: argparse.Namespace, watched: Watched) -> tuple[Run, int]:
    """The first run both workers shared on an otherwise quiet machine (else the best); and how many runs."""
    runs: list[Run] = []
    for _ in range(args.attempts):
        run = measure_once(url, concurrency, args.duration, watched)
        runs.append(run)
        if run.clean(concurrency):
            break
        time.sleep(1.0)  # let the gateway's idle upstream connections expire before trying again
    best = min(runs, key=lambda run: (not run.clean(concurrency), run.foreign_cores))
    return best, len(runs)


@dataclass(frozen=True)
class Row:
    concurrency: int
    direct: list[Run]
    proxied: list[Run]
    attempts: int

    def median(self, runs: list[Run], metric: str) -> float:
        return float(statistics.median(getattr(run, metric) for run in runs))

    @property
    def ratios(self) -> list[float]:
        return [g.rps / d.rps for d, g in zip(self.direct, self.proxied, strict=True)]


def measure(concurrency: int, direct: str, proxied: str, args: argparse.Namespace, watched: Watched) -> Row:
    """Alternate direct and gateway runs, `rounds` times, so slow drift hits both alike."""
    direct_runs: list[Run] = []
    proxied_runs: list[Run] = []
    attempts = 0
    for _ in range(args.rounds):
        for url, runs in ((direct, direct_runs), (proxied, proxied_runs)):
            run, tries = measure_clean(url, concurrency, args, watched)
            runs.append(run)
            attempts += tries
    return Row(concurrency, direct_runs, proxied_runs, attempts)


def report(rows: list[Row]) -> None:
    print(
        "\nmedians over alternating rounds; raw latencies (ms) from a closed-loop generator;"
        " CPU per request (µs) from each process's own counters"
    )
    print(
        f"{'c':>3} {'direct/s':>9} {'gw/s':>7} {'ratio':>6} {'ratios':>16} {'p50 d':>7} {'p50 g':>7}"
        f" {'+p50':>7} {'p99 d':>7} {'p99 g':>7} {'gw CPU':>7} {'replica d/g':>11} {'foreign':>8}"
        f" {'runs':>5} {'errors':>6}"
    )
    for row in rows:
        d, g = row.direct, row.proxied
        p50_d, p50_g = row.median(d, "p50_ms"), row.median(g, "p50_ms")
        replica = f"{row.median(d, 'replica_cpu_us'):.0f}/{row.median(g, 'replica_cpu_us'):.0f}"
        foreign = max(run.foreign_cores for run in d + g)
        print(
            f"{row.concurrency:>3} {row.median(d, 'rps'):>9.0f} {row.median(g, 'rps'):>7.0f}"
            f" {statistics.median(row.ratios):>6.2f} {' '.join(f'{r:.2f}' for r in row.ratios):>16}"
            f" {p50_d:>7.3f} {p50_g:>7.3f} {p50_g - p50_d:>+7.3f} {row.median(d, 'p99_ms'):>7.2f}"
            f" {row.median(g, 'p99_ms'):>7.2f} {row.median(g, 'gateway_cpu_us'):>7.0f} {replica:>11}"
            f" {foreign:>8.2f} {row.attempts:>5} {sum(run.errors for run in d + g):>6}"
        )
    print(
        f"\na run counts when neither replica worker did more than {BALANCED:.0%} of the work and processes"
        f" outside the benchmark used at most {QUIET} cores meanwhile (`foreign`: the most a kept run saw)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/gateway rounds")
    parser.add_argument("--attempts", type=int, default=6, help="tries per run to get a clean one")
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the gateway's event loop"
    )
    parser.add_argument("--serve-gateway", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.port, args.loop)
        return
    if args.load:
        run_load(args.load, args.concurrency, args.duration)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the replica is stopped on SIGTERM too
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        bentoml_replica(Path(tmp)) as (direct, tree),
        gateway_process(direct, args.loop) as (proxied, gateway),
    ):
        watched = Watched(gateway, tree.workers(), [*tree.seen.values(), gateway])
        print(f"replica {direct} ({len(watched.workers)} workers), gateway {proxied} ({args.loop} loop)")
        for concurrency in CONCURRENCY:
            row = measure(concurrency, direct, proxied, args, watched)
            rows.append(row)
            print(f"  c={concurrency}: ratios {' '.join(f'{r:.2f}' for r in row.ratios)}", flush=True)
    report(rows)


if __name__ == "__main__":
    main()
