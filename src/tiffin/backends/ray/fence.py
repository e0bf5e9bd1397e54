"""The fence: a replica run by a Ray actor dies with that actor.

A local replica outlives Tiffin on purpose (its launcher has a session of its own), but a replica on
a Ray node belongs to its actor: when the actor dies (`ray.kill`, a crash, its raylet gone) the
controller reports it FAILED and starts a replacement elsewhere, so the old one must not keep
serving. Ray kills a dead worker's direct children, which takes a PID-namespaced replica down; a
subreaper shim's workers (no root) would survive that. So each actor starts this small watcher,
`python -m tiffin.backends.ray.fence ROOT PID CREATE_TIME`, which detaches (it is not the actor's
child, so it outlives it), waits for the actor's exit, and then at once kills every replica tree
recorded under ROOT and removes ROOT (at once matters: a node's replicas then die together, as on a
machine that goes down, and the requests lost are those in flight at that moment). It exits once
ROOT is gone (the actor cleaned up after a graceful stop) or after fencing.
"""

import os
import select
import shutil
import sys
from pathlib import Path

from tiffin.backends.leftovers import kill_leftovers
from tiffin.backends.processes import ProcessId, find, identify, kill_all, tree
from tiffin.backends.replica_dir import ReplicaPaths, read_record

ROOT_CHECK_S = 1.0  # how often a watcher looks whether its replica was stopped without it


def spawn(root: Path) -> None:
    """Start the watcher for this process (the actor) and `root`; returns once it is detached."""
    me = identify(os.getpid())
    assert me is not None, "this process exists"
    module = "tiffin.backends.ray.fence"
    argv = [sys.executable, "-I", "-m", module, str(root), str(me.pid), repr(me.create_time)]
    pid = os.posix_spawn(sys.executable, argv, {"PATH": os.environ.get("PATH", "")})
    os.waitpid(pid, 0)  # it forks the watcher and exits at once


def clear(root: Path) -> None:
    """Kill whatever replica tree is recorded under `root`, then remove it."""
    kill_replicas(root)
    shutil.rmtree(root, ignore_errors=True)


def kill_replicas(root: Path) -> None:
    """Kill whatever replica tree is recorded under `root`; its output stays."""
    if root.is_dir():
        for directory in root.iterdir():
            if directory.is_dir() and not directory.name.startswith("."):
                _kill_replica(ReplicaPaths(directory))


def _kill_replica(paths: ReplicaPaths) -> None:
    record = read_record(paths)
    if record is not None and record.pid is not None and record.create_time is not None:
        launcher = find(ProcessId(record.pid, record.create_time))
        if launcher is not None:
            kill_all(tree(launcher))
    kill_leftovers(paths)


def watch(root: Path, owner: ProcessId) -> None:
    """Wait for the actor's exit (on a pidfd: at once, without polling), then fence; return early once
    `root` is gone (the actor stopped its replica itself)."""
    try:
        exited = os.pidfd_open(owner.pid)
    except ProcessLookupError:
        exited = None
    if exited is None or find(owner) is None:  # gone already, or the PID is another process's now
        clear(root)
        return
    while root.exists():
        ready, _, _ = select.select([exited], [], [], ROOT_CHECK_S)
        if ready:
            clear(root)
            return


def main(argv: list[str]) -> None:
    root, pid, create_time = Path(argv[0]), int(argv[1]), float(argv[2])
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(devnull, descriptor)
    watch(root, ProcessId(pid, create_time))


if __name__ == "__main__":
    main(sys.argv[1:])
