"""Seconds from `bentoml deploy` to `running` for a small bento, with a cold and a warm environment cache.

Run: `.venv/bin/python bench/deploy.py`.

It starts a real `tiffin up` on a fresh TIFFIN_HOME, builds a one-Service bento, and times
`bentoml deploy --wait` (which polls the status every 10 s after its first check, so this script polls
the API itself and reports when the deployment first showed `running`). The first deployment builds the
bento's environment (cold cache: a new virtualenv, packages from uv's own download cache); the second
deploys the same bento under another name, reusing the environment (warm cache). Everything started is
stopped at the end.
"""

import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bentoml_cli import SERVICE_SOURCE, BentomlCli
from tests.support.server import TiffinServer

TOKEN = "tfn_bench_admin"
DEADLINE_S = 300.0


def time_to_running(server: TiffinServer, cli: BentomlCli, tag: str, name: str) -> float:
    started = time.monotonic()
    cli.run("deploy", tag, "-n", name, "--no-wait")
    client = server.client()
    while time.monotonic() - started < DEADLINE_S:
        status = client.get(f"/api/v2/deployments/{name}").json()["status"]
        if status == "running":
            return time.monotonic() - started
        if status in ("failed", "image-build-failed", "unhealthy"):
            raise SystemExit(f"deployment {name} ended {status}")
        time.sleep(0.05)
    raise SystemExit(f"deployment {name} was not running after {DEADLINE_S} s")


def first_answer(url: str) -> None:
    response = httpx.post(f"{url}/echo", json={"text": "hi"}, timeout=30)
    response.raise_for_status()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tiffin-bench-") as tmp:
        root = Path(tmp)
        server = TiffinServer(home=root / "home", token=TOKEN).start()
        try:
            cli = BentomlCli(home=root / "bentoml")
            tag, _ = cli.build_echo_bento(root / "project")
            cli.login(server.endpoint, server.token)
            cli.run("push", tag)
            cold = time_to_running(server, cli, tag, "bench-cold")
            warm = time_to_running(server, cli, tag, "bench-warm")
            first_answer(server.client().get("/api/v2/deployments/bench-warm").json()["urls"][0])
        finally:
            server.teardown()
    print(f"bento {tag} (one Service, {SERVICE_SOURCE.count('@bentoml.api')} API)")
    print(f"deploy -> running, cold environment cache: {cold:6.2f} s")
    print(f"deploy -> running, warm environment cache: {warm:6.2f} s")
    print(f"warm / cold: {warm / cold:.2f}")


if __name__ == "__main__":
    main()
