"""A deployed bento through its deployment URL vs straight to its replica, in one run.

Run: `.venv/bin/python bench/gateway.py [--duration 5] [--rounds 3] [--attempts 6]`.

It starts a real `tiffin up`, deploys a trivial bento (one Service, 2 workers, an async JSON echo) with
`bentoml deploy`, and then, at concurrency 1, 8 and 64, loads the replica directly and through the
deployment's URL alternately. It prints requests/s, raw p50/p99, their ratios, and the CPU time per
request of the `tiffin up` process (gateway, API and reconciler together: an upper bound on the
gateway's cost). The load generator and the measurement rules are `bench/peers.py`'s.
Everything started is stopped at the end.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bentoml_cli import BentomlCli, write_project
from tests.support.server import TiffinServer

from bench.peers import CONCURRENCY, SERVICE, Watched, measure, report_echo

TOKEN = "tfn_bench_admin"


def deploy(server: TiffinServer, root: Path) -> tuple[str, str, psutil.Process]:
    """Deploy the echo bento; returns the deployment URL, the replica URL and the replica's launcher."""
    cli = BentomlCli(home=root / "bentoml")
    cli.login(server.endpoint, server.token)
    project = write_project(root / "project", SERVICE, "Echo")
    cli.run("deploy", str(project), "-n", "bench-gateway", "--timeout", "300", cwd=project)
    client = server.client()
    url = client.get("/api/v2/deployments/bench-gateway").json()["urls"][0]
    replica = client.get("/api/v2/deployments/bench-gateway/replicas").json()["items"][0]
    return url, replica["url"], psutil.Process(replica["pid"])


def workers_of(launcher: psutil.Process) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [p for p in launcher.children(recursive=True) if "--worker-id" in " ".join(p.cmdline())]
        if len(found) == 2:
            return found
        time.sleep(0.2)
    raise SystemExit("the replica did not show its 2 workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/gateway rounds")
    parser.add_argument("--attempts", type=int, default=6, help="tries per run to get a clean one")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tiffin-bench-") as tmp:
        server = TiffinServer(home=Path(tmp) / "home", token=TOKEN).start()
        try:
            proxied, direct, launcher = deploy(server, Path(tmp))
            assert server.process is not None
            tiffin = psutil.Process(server.process.pid)
            workers = workers_of(launcher)
            ours = [launcher, *launcher.children(recursive=True), tiffin]
            watched = Watched({"gateway": [tiffin]}, workers, ours)
            print(f"replica {direct} (2 workers), deployment URL {proxied}")
            targets = {"direct": direct, "gateway": proxied}
            rows = [measure("echo", concurrency, targets, args, watched) for concurrency in CONCURRENCY]
        finally:
            server.teardown()
    report_echo(rows)
    print("(`proxy µs` here is the whole `tiffin up` process: gateway, API and reconciler)")


if __name__ == "__main__":
    main()
