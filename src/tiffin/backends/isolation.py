"""How a replica's process tree is held together, chosen once per machine.

bentoml's workers start their own session, so process groups cannot own a replica. The strong
answer is a PID namespace: the shim is its PID 1, and when PID 1 dies for any reason the kernel
kills every process in the namespace, so no worker can outlive its replica. `unshare --pid` needs
root (CAP_SYS_ADMIN); without it the shim becomes a child subreaper instead, which catches orphans
while it lives but cannot protect them against its own SIGKILL.
"""

import ctypes
import ctypes.util
import functools
import logging
import shutil
import subprocess
from enum import StrEnum

log = logging.getLogger("tiffin.backends")

_PR_SET_CHILD_SUBREAPER = 36
_PROBE_TIMEOUT_S = 10.0


class Isolation(StrEnum):
    PID_NAMESPACE = "pid-namespace"  # the shim is PID 1 of its own PID namespace
    SUBREAPER = "subreaper"  # the shim adopts orphans and scans its descendants


def launcher_prefix(isolation: Isolation) -> list[str]:
    """What runs before the shim's own command line."""
    if isolation is Isolation.PID_NAMESPACE:
        return [_unshare() or "unshare", "--pid", "--fork", "--kill-child", "--"]
    return []


@functools.cache
def detect_isolation() -> Isolation:
    """A PID namespace when `unshare --pid` works here, else a subreaper (logged once)."""
    if _unshare_works():
        return Isolation.PID_NAMESPACE
    log.warning(
        "`unshare --pid` is not permitted here (it needs root); replicas run under a subreaper"
        " instead, so a crash of a replica's shim could orphan its workers (Tiffin then hunts"
        " them down by their recorded PIDs and environment, best effort)"
    )
    return Isolation.SUBREAPER


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux); whether that worked."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _unshare() -> str | None:
    return shutil.which("unshare")


def _unshare_works() -> bool:
    executable = _unshare()
    if executable is None:
        return False
    command = [executable, *launcher_prefix(Isolation.PID_NAMESPACE)[1:], "true"]
    try:
        result = subprocess.run(command, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0
