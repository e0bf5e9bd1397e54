"""The gateway against its peers: one bentoml replica loaded directly, through the gateway, through nginx.

Run: `.venv/bin/python -m bench.peers [--duration 5] [--rounds 3] [--attempts 6] [--quick]`.

In one run it starts a trivial bentoml Service (2 workers: an async JSON echo, and beside it a plain
ASGI app with a 1 MiB upload and a 1 MiB download), Tiffin's gateway in a process of its own (on uvloop
when that is importable), and nginx (Debian's package, installed when missing) with a config of its
own: keep-alive HTTP/1.1 connections to the replica, one worker process (the gateway is one process
too), bodies streamed both ways, no access log. Then:

1. at concurrency 1, 8 and 64 it loads the echo through each target, and prints medians of requests/s,
   raw p50/p99, requests/s as a ratio to direct, the latency added over direct, and each proxy's CPU
   time per request;
2. at concurrency 8 it sends 1 MiB request bodies, then fetches 1 MiB response bodies, through each
   target, and prints requests/s as a ratio to direct, p50, and each proxy's CPU time per MiB;
3. it says whether the gateway meets its targets (at least 0.95x direct requests/s at c=8 and c=64, at
   most +0.1 ms p50 at c=1, at most 100 µs CPU per request at any concurrency), with nginx's numbers
   beside. Added p50 is judged at c=1, where it is one request's latency: at higher concurrency it is
   mostly queueing at the replica, which the requests/s ratio already judges.

Why it measures this way:
- The targets take turns in rounds (their order rotating each round), and each ratio is taken within
  a round, so the slow drift of a shared machine hits every target alike. Tables show medians.
- CPU per request comes from each proxy's process tree's own counters over the measured window, hence
  the gateway in a process of its own: its CPU time is the gateway's alone.
- Its own load generator, not wrk: the replica's two workers share one listening socket, and a burst
  of connections (wrk opens all of them at once) usually lands on ONE worker, so two runs compare one
  worker with two, by chance (ratios of 0.55 or 1.5 in one sitting). This one opens its connections
  one at a time, so idle workers take turns accepting them (and the proxies' upstream pools grow the
  same way); each run records how the replica's CPU split between its workers and is repeated until
  neither did more than 70% of the work. A run is also repeated when processes outside the benchmark
  used CPU meanwhile (the machine is shared). Latencies are raw: no correction for stalls.
- Both proxies drop idle upstream connections after 0.5 s, so each run builds its pool afresh.
- The big bodies go to a plain ASGI route rather than a bentoml API, so the replica does little more
  than move the bytes, and what the proxies add stays visible.
- Everything it started, the replica's workers (which run in sessions of their own) and nginx's
  included, is stopped at the end, on Ctrl-C or an error too: by the PIDs it started (and, last, what
  names its scratch folder: `bench.cleanup`), never by name.
"""

import argparse
import asyncio
import importlib
import inspect
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from typing import Any

import httpx
import psutil

from bench.cleanup import scratch

ROOT = Path(__file__).resolve().parents[1]

SERVICE = """
import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MIB = b"x" * (1 << 20)


async def upload(request: Request) -> Response:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return Response(str(size), media_type="text/plain")


async def download(request: Request) -> Response:
    return Response(MIB, media_type="application/octet-stream")


raw = Starlette(routes=[Route("/upload", upload, methods=["POST"]), Route("/download", download)])


@bentoml.asgi_app(raw, path="/raw")
@bentoml.service(workers=2)
class Echo:
    @bentoml.api
    async def echo(self, text: str) -> dict:
        return {"text": text}
"""

MIB = 1 << 20


def http_request(method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if method == "POST":
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


REQUESTS = {  # what the load generator sends, by name
    "echo": http_request("POST", "/echo", b'{"text":"hello"}'),
    "upload": http_request("POST", "/raw/upload", b"x" * MIB, "application/octet-stream"),
    "download": http_request("GET", "/raw/download"),
}
BIG = ("upload", "download")  # each moves 1 MiB through the proxy

CONCURRENCY = (1, 8, 64)
BIG_CONCURRENCY = 8
BALANCED = 0.7  # a run counts when no worker did more than this share of the replica's CPU work
QUIET = 0.15  # ... and when other processes on the machine used at most this many cores meanwhile
RAMP_S = 0.003  # pause between opening two connections, so idle workers take turns accepting
WARMUP_S = 1.0
UPSTREAM_IDLE_S = 0.5  # both proxies close idle upstream connections this soon

MIN_RATIO = 0.95  # the gateway's targets
MAX_ADDED_P50_MS = 0.1
MAX_CPU_US = 100.0

QUICK = {"duration": 1.0, "rounds": 1, "attempts": 2}
FULL = {"duration": 5.0, "rounds": 3, "attempts": 6}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_command(*args: str) -> list[str]:
    """This module again, in another mode (`--serve-gateway`, `--load`); run from the repository root."""
    return [sys.executable, "-m", "bench.peers", *args]


# --- processes we start, and all of their descendants --------------------------------------------------


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

    def collect(self) -> list[psutil.Process]:
        with suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                self.seen.setdefault(proc.pid, proc)
        return list(self.seen.values())

    def workers(self, count: int, timeout: float = 30) -> list[psutil.Process]:
        """bentoml's worker processes, once all `count` of them run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [proc for proc in self.collect() if "--worker-id" in " ".join(_cmdline(proc))]
            if len(found) == count:
                return found
            time.sleep(0.1)
        raise RuntimeError(f"the replica did not show its {count} workers")

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


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text()}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready:\n{log.read_text()}")


@contextmanager
def owned(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[ProcessTree]:
    """Start `command` (output to `log`); stop it and every descendant it had, whatever happens."""
    with log.open("wb") as out:
        tree = ProcessTree(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
        try:
            yield tree
        finally:
            tree.stop()


# --- the replica ---------------------------------------------------------------------------------------


@contextmanager
def bentoml_replica(workdir: Path) -> Iterator[tuple[str, ProcessTree]]:
    """A real bentoml HTTP server for SERVICE; yields its base URL and process tree."""
    for name in ("home", "tmp"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    (workdir / "service.py").write_text(SERVICE)
    port = free_port()
    env = {
        # PYTHONPATH may bring uvloop for the gateway (see --loop); the replica stays as it is
        **{key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        "BENTOML_HOME": str(workdir / "home"),
        "TMPDIR": str(workdir / "tmp"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    command = [sys.executable, "-m", "bentoml_cli._internal.start", "start-http-server", "service:Echo"]
    command += ["--working-dir", str(workdir), "--host", "127.0.0.1", "--port", str(port)]
    with owned(command, workdir / "replica.log", env) as tree:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, tree.process, workdir / "replica.log", "the replica")
        yield url, tree


# --- the gateway, in a process of its own --------------------------------------------------------------


def gateway_settings(settings: Callable[..., Any]) -> Any:
    """Idle upstream connections go quickly, so each run's pool is rebuilt (and re-spread over workers).

    Only the settings the gateway has are passed: the rebuild may rename or drop some.
    """
    wanted = {"upstream_idle_timeout_s": UPSTREAM_IDLE_S, "sweep_interval_s": UPSTREAM_IDLE_S / 2}
    known = inspect.signature(settings).parameters
    return settings(**{key: value for key, value in wanted.items() if key in known})


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for `uvloop`, and for `auto` when importable; None: asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("uvloop is not importable") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def serve_gateway(upstream: str, port: int, loop: str) -> None:
    """Child-process mode: run a Gateway routing `port` to `upstream` until stdin closes.

    Only this process imports the gateway (through its public API), so the others start faster.
    """
    from tiffin.gateway import Gateway, GatewaySettings  # noqa: PLC0415
    from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C the parent closes stdin

    async def no_tokens(token: str) -> frozenset[str] | None:
        return None

    async def main() -> None:
        gateway = Gateway("127.0.0.1", no_tokens, gateway_settings(GatewaySettings))
        service = ServiceRoute("Echo", free_port(), (upstream,))
        await gateway.apply(
            RoutingSnapshot({"echo": DeploymentRoute("echo", port, "Echo", {"Echo": service})})
        )
        running = type(asyncio.get_running_loop())
        print(f"ready {running.__module__.split('.')[0]}", flush=True)  # "uvloop" or "asyncio"
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await gateway.close()

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())


@contextmanager
def gateway_process(upstream: str, loop: str) -> Iterator[tuple[str, psutil.Process, str]]:
    """Yields the gateway's URL, its process and the event loop it runs on."""
    port = free_port()
    command = child_command("--serve-gateway", upstream, "--port", str(port), "--loop", loop)
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        if ready[:1] != [b"ready"]:
            raise RuntimeError("the gateway process did not start")
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid), ready[1].decode()
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- nginx ---------------------------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;  # clients' connections last the whole run (the default closes at 1000)
    client_max_body_size 0;
    client_body_buffer_size 64k;
    upstream replica {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout {idle_ms}ms;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replica;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;  # stream bodies both ways, as the gateway does
            proxy_buffering off;
            proxy_buffer_size 64k;  # ... in reads of up to 64 KiB
            proxy_buffers 4 64k;  # (unused unbuffered, but must exceed proxy_busy_buffers_size)
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """nginx's path; Debian's package is installed first when missing and this runs as root."""
    found = which("nginx") or which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("nginx is missing: install it (`sudo apt-get install -y nginx`) and run again")
    print("nginx is missing: apt-get install -y nginx", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "nginx"]
    if subprocess.run(install, check=False, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        done = subprocess.run(install, check=False, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"apt-get install nginx failed:\n{done.stdout}{done.stderr}")
    found = which("nginx", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", ""))
    if not found:
        raise SystemExit("apt-get installed nginx, but no nginx binary is on the PATH or in /usr/sbin")
    return found


@contextmanager
def nginx_process(
    binary: str, upstream: str, workdir: Path, workers: int
) -> Iterator[tuple[str, ProcessTree]]:
    """nginx in front of `upstream`, as a child of ours; yields its URL and process tree."""
    workdir.mkdir(parents=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            workers=workers,
            dir=workdir,
            upstream=upstream.removeprefix("http://"),
            idle_ms=int(UPSTREAM_IDLE_S * 1000),
            port=port,
        )
    )
    command = [binary, "-p", str(workdir), "-c", str(conf), "-e", "stderr"]
    with owned(command, workdir / "nginx.log") as tree:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, tree.process, workdir / "nginx.log", "nginx")
        yield url, tree


# --- the load generator, in a process of its own -------------------------------------------------------

_CONTENT_LENGTH = re.compile(rb"\r\n[Cc]ontent-[Ll]ength:[ \t]*(\d+)")


class _Window:
    """Which responses count: those completed between start and end; their raw latencies (s)."""

    def __init__(self) -> None:
        self.start = self.end = float("inf")
        self.latencies: list[float] = []
        self.errors = 0
        self.running = True

    def counts(self, now: float) -> bool:
        return self.start <= now <= self.end


class _Client(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as the previous answer is complete."""

    def __init__(self, window: _Window, request: bytes) -> None:
        self.window = window
        self.request = request
        self.head = bytearray()
        self.remaining: int | None = None  # body bytes still to come; None while reading a head
        self.ok = self.framed = False
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.window.running and self.window.counts(time.perf_counter()):
            self.window.errors += 1  # the server closed a connection mid-run

    def _send(self) -> None:
        assert self.transport is not None
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.remaining is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _CONTENT_LENGTH.search(self.head, 0, end + 2)
            self.framed = length is not None
            self.ok = self.framed and self.head.startswith(b"HTTP/1.1 200")
            self.remaining = (int(length[1]) if length else 0) - (len(self.head) - end - 4)
            self.head.clear()
        else:
            self.remaining -= len(data)
        if self.remaining <= 0:
            self.remaining = None
            self._complete()

    def _complete(self) -> None:
        now = time.perf_counter()
        window = self.window
        if window.counts(now):
            window.latencies.append(now - self.sent)
            window.errors += not self.ok
        if self.transport is None:
            return
        if window.running and self.framed:
            self._send()
        else:  # done, or a response without Content-Length (which this client does not frame)
            self.transport.close()
            self.transport = None


def run_load(url: str, request: str, concurrency: int, duration: float) -> None:
    """Child-process mode: print `start` when the measured window opens, then one JSON line of results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C the parent kills it
    host, port = url.removeprefix("http://").split(":")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        window = _Window()
        for _ in range(concurrency):
            await loop.create_connection(lambda: _Client(window, REQUESTS[request]), host, int(port))
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


# --- the measurement -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    busiest_worker: float  # the larger worker's share of the replica's CPU time in the window
    foreign_cores: float  # CPU used by processes outside this benchmark (other users of the machine)
    proxy_cpu_us: float  # the target's proxy's CPU time per request (0 for direct runs)
    replica_cpu_us: float  # replica (both workers) CPU time per request

    def clean(self, concurrency: int) -> bool:
        shared = concurrency == 1 or self.busiest_worker <= BALANCED
        return shared and self.foreign_cores <= QUIET


@dataclass(frozen=True)
class Sample:
    proxies: dict[str, float]
    workers: list[float]
    ours: float
    machine: float
    at: float


@dataclass(frozen=True)
class Watched:
    """The processes whose CPU time is read: each proxy's, the replica's workers, the whole benchmark."""

    proxies: dict[str, list[psutil.Process]]  # each proxy's process tree, by target name
    workers: list[psutil.Process]
    ours: list[psutil.Process]  # every process this benchmark started (replica tree, proxies)

    def sample(self, load: psutil.Process) -> Sample:
        busy = psutil.cpu_times()
        machine = busy.user + busy.system + busy.nice + getattr(busy, "irq", 0.0)
        machine += getattr(busy, "softirq", 0.0)
        ours = sum(_cpu(proc) for proc in [*self.ours, load, psutil.Process()])
        proxies = {name: sum(_cpu(proc) for proc in tree) for name, tree in self.proxies.items()}
        return Sample(proxies, [_cpu(w) for w in self.workers], ours, machine, time.monotonic())


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def measure_once(
    target: str, url: str, request: str, concurrency: int, duration: float, watched: Watched
) -> Run:
    command = child_command("--load", url, "--request", request, "--concurrency", str(concurrency))
    command += ["--duration", str(duration)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        load = psutil.Process(process.pid)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "start":
            raise RuntimeError(f"the load generator failed ({target}, {request}, c={concurrency})")
        before = watched.sample(load)
        result = json.loads(process.stdout.readline())
        after = watched.sample(load)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    worker_cpu = [a - b for a, b in zip(after.workers, before.workers, strict=True)]
    foreign = (after.machine - before.machine) - (after.ours - before.ours)
    requests = max(1, result["requests"])
    proxy_cpu = after.proxies.get(target, 0.0) - before.proxies.get(target, 0.0)
    return Run(
        rps=result["requests"] / result["seconds"],
        p50_ms=result["p50"] * 1e3,
        p99_ms=result["p99"] * 1e3,
        errors=result["errors"],
        busiest_worker=max(worker_cpu) / max(sum(worker_cpu), 1e-9),
        foreign_cores=max(0.0, foreign) / (after.at - before.at),
        proxy_cpu_us=proxy_cpu / requests * 1e6,
        replica_cpu_us=sum(worker_cpu) / requests * 1e6,
    )


def measure_clean(
    target: str, url: str, request: str, concurrency: int, args: argparse.Namespace, watched: Watched
) -> tuple[Run, int]:
    """The first run both workers shared on an otherwise quiet machine (else the best); and how many runs."""
    runs: list[Run] = []
    for _ in range(args.attempts):
        run = measure_once(target, url, request, concurrency, args.duration, watched)
        runs.append(run)
        if run.clean(concurrency):
            break
        time.sleep(2 * UPSTREAM_IDLE_S)  # let the proxy's idle upstream connections expire first
    best = min(runs, key=lambda run: (not run.clean(concurrency), run.foreign_cores))
    return best, len(runs)


@dataclass(frozen=True)
class Row:
    """One load at one concurrency: each target's kept runs, one per round, and how many runs it took."""

    request: str
    concurrency: int
    runs: dict[str, list[Run]]  # by target, "direct" first
    attempts: dict[str, int]

    def median(self, target: str, metric: str) -> float:
        return float(statistics.median(getattr(run, metric) for run in self.runs[target]))

    def ratios(self, target: str) -> list[float]:
        pairs = zip(self.runs["direct"], self.runs[target], strict=True)
        return [proxied.rps / direct.rps for direct, proxied in pairs]

    def ratio(self, target: str) -> float:
        return float(statistics.median(self.ratios(target)))

    def added(self, target: str, metric: str) -> float:
        return self.median(target, metric) - self.median("direct", metric)


def measure(
    request: str, concurrency: int, targets: dict[str, str], args: argparse.Namespace, watched: Watched
) -> Row:
    """Each target in turn, `rounds` times, the order rotating, so slow drift hits all of them alike."""
    names = list(targets)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    attempts = dict.fromkeys(names, 0)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            run, tries = measure_clean(name, targets[name], request, concurrency, args, watched)
            runs[name].append(run)
            attempts[name] += tries
    row = Row(request, concurrency, runs, attempts)
    ratios = " | ".join(f"{name} {_list(row.ratios(name))}" for name in names[1:])
    print(f"  {request} c={concurrency}: ratios {ratios}", flush=True)
    return row


def _list(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


# --- the report ----------------------------------------------------------------------------------------


def _cells(row: Row, target: str, latency: tuple[str, ...], digits: int) -> list[str]:
    """One target's line: req/s, ratio, the ratios, the latencies and what the proxy added to them."""
    proxied = target != "direct"
    runs = row.runs[target]
    cells = [f"{target:<8}", f"{row.median(target, 'rps'):>7.0f}", f"{row.ratio(target):>6.2f}"]
    cells.append(f"{_list(row.ratios(target)) if proxied else '':>15}")
    cells += [f"{row.median(target, metric):>7.{digits}f}" for metric in latency]
    cells += [f"{row.added(target, metric):>+7.{digits}f}" if proxied else " " * 7 for metric in latency]
    cells.append(f"{row.median(target, 'proxy_cpu_us'):>8.0f}" if proxied else " " * 8)
    cells.append(f"{row.median(target, 'replica_cpu_us'):>10.0f}")
    cells += [f"{row.attempts[target]:>5}", f"{sum(run.errors for run in runs):>6}"]
    cells.append(f"{max(run.foreign_cores for run in runs):>7.2f}")
    return cells


def _header(first: str, latency: tuple[str, ...]) -> str:
    names = [f"{'target':<8}", f"{'req/s':>7}", f"{'ratio':>6}", f"{'ratios':>15}"]
    names += [f"{name.removesuffix('_ms'):>7}" for name in latency]
    names += [f"{'+' + name.removesuffix('_ms'):>7}" for name in latency]
    names += [f"{'proxy µs':>8}", f"{'replica µs':>10}", f"{'runs':>5}", f"{'errors':>6}", f"{'foreign':>7}"]
    return " ".join([first, *names])


def report_echo(rows: list[Row]) -> None:
    print(
        "\n1. the JSON echo: medians over rounds; raw latencies (ms) from a closed-loop generator;"
        " CPU per request (µs) from each process's own counters"
    )
    latency = ("p50_ms", "p99_ms")
    print(_header(f"{'c':>3}", latency))
    for row in rows:
        for target in row.runs:
            print(" ".join([f"{row.concurrency:>3}", *_cells(row, target, latency, 3)]))


def report_big(rows: list[Row]) -> None:
    print(
        f"\n2. 1 MiB bodies at c={BIG_CONCURRENCY}: medians over rounds; one request moves 1 MiB, so req/s"
        " is MiB/s and CPU µs per request is per MiB"
    )
    print(_header(f"{'body':<8}", ("p50_ms",)))
    for row in rows:
        body = "request" if row.request == "upload" else "response"
        for target in row.runs:
            print(" ".join([f"{body:<8}", *_cells(row, target, ("p50_ms",), 2)]))


@dataclass(frozen=True)
class Goal:
    what: str
    value: Callable[[str], float]  # a proxy's number
    shown: str  # its format
    limit: float
    at_least: bool  # else at most

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


def goals(echo: dict[int, Row]) -> list[Goal]:
    def added_p50(proxy: str) -> float:
        return echo[1].added(proxy, "p50_ms")

    def worst_cpu(proxy: str) -> float:
        return max(row.median(proxy, "proxy_cpu_us") for row in echo.values())

    ratios = [
        Goal(f"req/s ≥ {MIN_RATIO}x direct at c={c}", echo[c].ratio, "{:.3f}x", MIN_RATIO, at_least=True)
        for c in (8, 64)
    ]
    return [
        *ratios,
        Goal(f"added p50 ≤ +{MAX_ADDED_P50_MS} ms at c=1", added_p50, "{:+.3f} ms", MAX_ADDED_P50_MS, False),
        Goal(f"CPU ≤ {MAX_CPU_US:.0f} µs/request (worst c)", worst_cpu, "{:.0f} µs", MAX_CPU_US, False),
    ]


def report_goals(echo: dict[int, Row], proxies: list[str]) -> None:
    print("\n3. targets (for the gateway; nginx beside, for reference)")
    print(f"{'target':<36}" + "".join(f"{proxy:>20}" for proxy in proxies))
    met = 0
    for goal in goals(echo):
        cells = ""
        for proxy in proxies:
            value = goal.value(proxy)
            cells += f"{goal.shown.format(value):>11} {'met' if goal.met(value) else 'NOT met':>8}"
            met += proxy == "gateway" and goal.met(value)
        print(f"{goal.what:<36}{cells}")
    print(f"the gateway meets {met} of {len(goals(echo))} targets")


# --- the run -------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, help=f"seconds measured per run ({FULL['duration']})")
    parser.add_argument("--rounds", type=int, help=f"rounds over all targets ({FULL['rounds']})")
    parser.add_argument("--attempts", type=int, help=f"tries per run to get a clean one ({FULL['attempts']})")
    parser.add_argument("--quick", action="store_true", help=f"a short smoke run: {QUICK}")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="the gateway's event loop"
    )
    parser.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes (1)")
    parser.add_argument("--serve-gateway", metavar="UPSTREAM", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--request", choices=tuple(REQUESTS), help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def benchmark(args: argparse.Namespace) -> tuple[list[Row], list[Row]]:
    nginx = nginx_binary()
    with (
        scratch() as root,
        bentoml_replica(root / "replica") as (direct, replica),
        gateway_process(direct, args.loop) as (gateway_url, gateway, loop),
        nginx_process(nginx, direct, root / "nginx", args.nginx_workers) as (nginx_url, nginx_tree),
    ):
        targets = {"direct": direct, "gateway": gateway_url, "nginx": nginx_url}
        gateway_tree = [gateway, *gateway.children(recursive=True)]
        nginx_procs = nginx_tree.collect()
        watched = Watched(
            {"gateway": gateway_tree, "nginx": nginx_procs},
            replica.workers(2),
            [*replica.collect(), *gateway_tree, *nginx_procs],
        )
        print(
            f"replica {direct} (2 workers), gateway {gateway_url} ({loop} loop),"
            f" nginx {nginx_url} ({args.nginx_workers} worker); {args.duration} s per run,"
            f" {args.rounds} rounds",
            flush=True,
        )
        echo = [measure("echo", c, targets, args, watched) for c in CONCURRENCY]
        big = [measure(request, BIG_CONCURRENCY, targets, args, watched) for request in BIG]
    return echo, big


def main() -> None:
    args = parse_args()
    if args.serve_gateway:
        serve_gateway(args.serve_gateway, args.port, args.loop)
        return
    if args.load:
        run_load(args.load, args.request, args.concurrency, args.duration)
        return
    started = time.monotonic()
    echo, big = benchmark(args)
    report_echo(echo)
    report_big(big)
    report_goals({row.concurrency: row for row in echo}, ["gateway", "nginx"])
    print(
        f"\na run counts when neither replica worker did more than {BALANCED:.0%} of the work and processes"
        f" outside the benchmark used at most {QUIET} cores meanwhile (`foreign`: the most a kept run saw);"
        f" the whole benchmark took {time.monotonic() - started:.0f} s"
    )
    kept = [(row, run) for row in echo + big for runs in row.runs.values() for run in runs]
    noisy = sum(not run.clean(row.concurrency) for row, run in kept)
    if noisy:
        print(f"WARNING: {noisy} of {len(kept)} kept runs are not clean: none was in --attempts tries")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted; everything started was stopped")
