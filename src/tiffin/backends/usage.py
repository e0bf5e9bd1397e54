"""CPU and memory a replica's whole process tree uses, for autoscaling on `cpu` and `memory`.

bentoml serves from several processes (a supervisor, its workers), so one process's numbers say little;
the sums over the tree are what the replica costs. CPU is cumulative seconds: the reader divides the
difference between two samples by the time between them.
"""

import psutil

from tiffin.backends.processes import tree
from tiffin.backends.protocol import Usage


def tree_usage(root: psutil.Process) -> Usage:
    cpu_seconds, memory_bytes = 0.0, 0
    for process in tree(root):
        try:
            with process.oneshot():
                times = process.cpu_times()
                cpu_seconds += times.user + times.system
                memory_bytes += process.memory_info().rss
        except psutil.Error:
            continue
    return Usage(cpu_seconds, memory_bytes)
