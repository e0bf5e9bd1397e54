"""Finding and killing what a dead subreaper shim left behind.

With a PID namespace nothing can outlive the shim. Without one (no root), a shim killed by SIGKILL
orphans its tree: the orphans are re-parented away and can no longer be found by ancestry. Two
traces remain: the tree the shim last recorded in `tree.json`, and the environment every replica
process inherits (its private BENTOML_HOME). Both are checked, so a worker that started after the
last record, or one that changed its environment, is still found by the other.
"""

import psutil

from tiffin.backends.processes import ProcessId, find, kill_all
from tiffin.backends.replica_dir import ReplicaPaths, read_json

MARKER_VARIABLE = "BENTOML_HOME"


def kill_leftovers(paths: ReplicaPaths) -> None:
    """SIGKILL every process recorded in `tree.json` or carrying the replica's BENTOML_HOME."""
    kill_all(recorded(paths) + marked(paths))


def recorded(paths: ReplicaPaths) -> list[psutil.Process]:
    """The still-running processes of the shim's last `tree.json` (empty when there is none)."""
    entries = read_json(paths.tree)
    if not isinstance(entries, list):
        return []
    found = (find(ProcessId(int(entry[0]), float(entry[1]))) for entry in entries if _is_pair(entry))
    return [process for process in found if process is not None]


def marked(paths: ReplicaPaths) -> list[psutil.Process]:
    """Processes whose environment names this replica's BENTOML_HOME."""
    home = str(paths.home)
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER_VARIABLE) == home:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _is_pair(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, int | float) for x in entry)
