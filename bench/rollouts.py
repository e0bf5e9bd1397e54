"""Failed requests out of sent while each rollout strategy replaces version 1 by version 2 under load.

Run: `.venv/bin/python -m bench.rollouts`.

It starts a real `tiffin up` on a fresh TIFFIN_HOME and builds two versions of a one-Service bento
that answers its version. For each strategy it deploys version 1 with 2 replicas (`bentoml deploy
-f`), starts one client thread calling the URL back to back (10 ms apart), updates to version 2, and
waits until the last 20 answers all come from version 2 and the deployment is `running`. It prints,
per strategy: requests sent and failed during the whole update, seconds from the update command to the
first and to the last-needed version 2 answer, and whether both versions answered in between (they
must not for Recreate). Each deployment is deleted before the next; everything started is stopped.
"""

import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.bentoml_cli import VERSIONED_SOURCE, BentomlCli, write_project
from tests.support.load import Load, steady_load, wait_for
from tests.support.server import TiffinServer

TOKEN = "tfn_bench_admin"
STRATEGIES = ("Recreate", "RollingUpdate", "RampedSlowRollout", "BestEffortControlledRollout")
LAST = 20


def config_file(root: Path, name: str, tag: str, strategy: str) -> Path:
    service = {"scaling": {"min_replicas": 2, "max_replicas": 2}, "deployment_strategy": strategy}
    path = root / f"{name}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "bento": tag, "services": {"Ver": service}}))
    return path


def only_version_2(load: Load, server: TiffinServer, name: str) -> bool:
    served = load.versions()
    status = server.client().get(f"/api/v2/deployments/{name}").json()["status"]
    return len(served) >= LAST and set(served[-LAST:]) == {"2"} and status == "running"


def roll(server: TiffinServer, cli: BentomlCli, root: Path, tags: dict[str, str], strategy: str) -> str:
    name = f"roll-{strategy.lower()}"[:40]
    cli.run("deploy", "-f", str(config_file(root, name, tags["1"], strategy)), "--timeout", "300")
    url = server.client().get(f"/api/v2/deployments/{name}").json()["urls"][0]
    with steady_load(url) as load:
        wait_for(lambda: len(load.versions()) >= LAST, "version 1 to serve")
        sent_before, started = len(load.results), time.monotonic()
        cli.run("deployment", "update", name, "-f", str(config_file(root, name, tags["2"], strategy)))
        wait_for(lambda: only_version_2(load, server, name), "version 2 only", 300)
        took = time.monotonic() - started
    during = load.results[sent_before:]
    failed = [r for r in during if r[0] != "200"]
    served = [text for status, text in during if status == "200"]
    overlap = "2" in served and "1" in served[served.index("2") :]
    cli.run("deployment", "delete", name)
    return (
        f"{strategy:28} failed/sent {len(failed):3}/{len(during):5}   done in {took:5.1f} s"
        f"   both versions answered: {'yes' if overlap else 'no'}"
    )


def main() -> None:
    lines = []
    with tempfile.TemporaryDirectory(prefix="tiffin-bench-") as tmp:
        root = Path(tmp)
        server = TiffinServer(home=root / "home", token=TOKEN).start()
        try:
            cli = BentomlCli(home=root / "bentoml")
            tags = {
                v: cli.build(
                    write_project(
                        root / f"v{v}", VERSIONED_SOURCE.format(version=v, crash="pass", fail=""), "Ver"
                    )
                )
                for v in ("1", "2")
            }
            cli.login(server.endpoint, server.token)
            for strategy in STRATEGIES:
                lines.append(roll(server, cli, root, tags, strategy))
                print(lines[-1], flush=True)
        finally:
            server.teardown()
    print("\n".join(["", "v1 -> v2, 2 replicas, one client back to back:", *lines]))


if __name__ == "__main__":
    main()
