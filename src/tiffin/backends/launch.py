"""Turning a `ReplicaSpec` into a running shim: its directory, environment, secrets and command line.

Each replica gets a private BENTOML_HOME, TMPDIR and Prometheus directory, because bentoml wipes
its metrics directory on start and leaves sockets in the temp dir when killed: shared ones would
let replicas break each other. The launcher is spawned in a session of its own and with no pipe to
Tiffin, so a dying Tiffin neither signals it nor breaks its output.
"""

import os
import signal
import socket
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from tiffin.backends.isolation import Isolation, launcher_prefix
from tiffin.backends.ledger import Allocation
from tiffin.backends.protocol import Materialized, MountedFile, ReplicaSpec
from tiffin.backends.replica_dir import ReplicaPaths

Command = Callable[[ReplicaSpec, Materialized, str, int], list[str]]
"""The replica's command line, given its spec, its bento made runnable, and the host and port to bind."""

# Only these of Tiffin's own variables reach a replica: Tiffin's settings and credentials must not.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_PORT_ATTEMPTS = 20


def default_command(spec: ReplicaSpec, bento: Materialized, host: str, port: int) -> list[str]:
    """bentoml's standalone server for one Service of the bento, on `host`:`port`."""
    depends = [arg for name, url in spec.depends.items() for arg in ("--depends", f"{name}={url}")]
    return [
        str(bento.python),
        "-m",
        "bentoml_cli._internal.start",
        "start-http-server",
        str(bento.bento_dir),
        "--service-name",
        spec.service,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(bento.bento_dir),
        *depends,
    ]


def free_port(taken: Collection[int], host: str = "127.0.0.1") -> int:
    """A port nobody listens on now at `host` and no other replica was given."""
    for _ in range(_PORT_ATTEMPTS):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in taken:
            return port
    raise OSError("no free loopback port found")


def prepare(paths: ReplicaPaths, files: tuple[MountedFile, ...]) -> None:
    """Create the replica's private directories and write its mounted secret files."""
    paths.root.mkdir(mode=0o700, parents=True)
    for directory in (paths.home, paths.tmp, paths.prometheus):
        directory.mkdir(mode=0o700)
    for mounted in files:
        write_secret(mounted_path(paths.home, mounted.path), mounted.content)


def mounted_path(home: Path, path: str) -> Path:
    """Where a mounted file goes: absolute as given, relative under BENTOML_HOME (never above it)."""
    target = Path(path)
    if target.is_absolute():
        return target
    resolved = (home / target).resolve()
    if not resolved.is_relative_to(home.resolve()):
        raise ValueError(f"mounted file {path!r} points outside the replica's BENTOML_HOME")
    return resolved


def write_secret(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT


def replica_env(spec: ReplicaSpec, paths: ReplicaPaths, allocation: Allocation) -> dict[str, str]:
    """The replica's environment: a few of Tiffin's variables, the spec's, then the private dirs."""
    inherited = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    return {
        **inherited,
        **spec.env,
        "BENTOML_HOME": str(paths.home),
        "TMPDIR": str(paths.tmp),
        "PROMETHEUS_MULTIPROC_DIR": str(paths.prometheus),
        "BENTOML_DO_NOT_TRACK": "True",
        "CUDA_VISIBLE_DEVICES": ",".join(str(index) for index in allocation.gpu_indices),
    }


def shim_argv(
    isolation: Isolation,
    paths: ReplicaPaths,
    command: list[str],
    allocation: Allocation,
    options: Mapping[str, str],
) -> list[str]:
    """The launcher's command line: isolation prefix, the shim and its limits, then the command."""
    limits = {
        "--memory-bytes": str(allocation.memory_bytes),
        "--cpus": ",".join(str(core) for core in allocation.cpu_cores),
        **options,
    }
    flags = [part for name, value in limits.items() for part in (name, value)]
    shim = [sys.executable, "-I", "-m", "tiffin.backends.shim", str(paths.root), *flags]
    return [*launcher_prefix(isolation), *shim, "--", *command]


def spawn_launcher(argv: list[str], env: Mapping[str, str], paths: ReplicaPaths) -> int:
    """Start the launcher in its own session, output to the shim log; returns its PID."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(paths.shim_log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(
        argv[0],
        argv,
        dict(env),
        file_actions=actions,
        setsid=True,
        setsigmask=(),
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )
