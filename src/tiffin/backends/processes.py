"""Process identity and whole-tree killing, safe against recycled PIDs.

A PID alone does not name a process for long: after a replica dies its PID may be given to an
unrelated process, and a Tiffin that adopts or kills by PID would then hit a stranger. A process is
therefore named by (pid, create_time) everywhere, and checked again before every signal. Processes
this Tiffin spawned are reaped with `waitpid` (no zombies, and the exit status is kept); adopted
ones, whose parent is someone else, are watched through psutil.
"""

import contextlib
import functools
import os
import signal
from dataclasses import dataclass

import psutil

# psutil derives create_time from the boot time, which the kernel may report a little differently
# over time; a recycled PID can only match within this window if it was reused almost at once.
CREATE_TIME_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class ProcessId:
    """One process, immune to PID reuse."""

    pid: int
    create_time: float


def identify(pid: int) -> ProcessId | None:
    """The identity of the running process `pid`, or None when there is none."""
    try:
        return ProcessId(pid, psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def find(process_id: ProcessId) -> psutil.Process | None:
    """The live (non-zombie) process named by `process_id`, or None when it is gone."""
    process = _same_process(process_id)
    return process if process is not None and not _is_zombie(process) else None


def _same_process(process_id: ProcessId) -> psutil.Process | None:
    """The process (zombies included) named by `process_id`, or None."""
    try:
        process = psutil.Process(process_id.pid)
        same = abs(process.create_time() - process_id.create_time) < CREATE_TIME_TOLERANCE_S
    except psutil.Error:
        return None
    return process if same else None


def _is_zombie(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def tree(process: psutil.Process) -> list[psutil.Process]:
    """`process` and every process descending from it (empty when it is gone)."""
    try:
        return [process, *_descendants(process)]
    except psutil.Error:
        return []


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    """Walk /proc/<pid>/task/<tid>/children: cost grows with the tree, not with the host."""
    if not _proc_lists_children():
        return list(process.children(recursive=True))  # scans every process on the host
    found: list[psutil.Process] = []
    parents = [process.pid]
    while parents:
        parents = [pid for parent in parents for pid in _children_pids(parent)]
        found.extend(_existing(parents))
    return found


@functools.cache
def _proc_lists_children() -> bool:
    """Whether this kernel has /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return False
    return any(os.path.exists(f"/proc/self/task/{task}/children") for task in tasks)


def _children_pids(pid: int) -> list[int]:
    """Direct children of every thread of `pid` (empty when it is gone)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    pids: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as file:
                pids.extend(int(child) for child in file.read().split())
        except OSError:
            continue
    return pids


def _existing(pids: list[int]) -> list[psutil.Process]:
    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            processes.append(psutil.Process(pid))
    return processes


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL each process that is still the same process."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)


def signal_process(process_id: ProcessId, signum: int) -> bool:
    """Send `signum` to the process if it is still the one named; whether it was sent."""
    process = find(process_id)
    if process is None:
        return False
    try:
        process.send_signal(signum)
    except psutil.Error:
        return False
    return True


def describe_wait_status(status: int) -> str:
    """A wait status in words: "exited with code 3", "killed by SIGKILL"."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal_name(os.WTERMSIG(status))}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class TrackedProcess:
    """A process watched by identity; reaped here when it is our child, polled otherwise."""

    def __init__(self, process_id: ProcessId) -> None:
        self.id = process_id
        self.wait_status: int | None = None  # known only for our own children
        self._gone = False

    @property
    def pid(self) -> int:
        return self.id.pid

    def alive(self) -> bool:
        if not self._gone:
            self._gone = self._has_exited()
        return not self._gone

    def _has_exited(self) -> bool:
        process = _same_process(self.id)  # checked first: never reap a stranger with a reused PID
        if process is None:
            return True
        try:
            pid, status = os.waitpid(self.id.pid, os.WNOHANG)
        except ChildProcessError:  # not our child: an adopted process
            return _is_zombie(process)
        if pid == 0:
            return False
        self.wait_status = status
        return True

    def process(self) -> psutil.Process | None:
        return None if not self.alive() else find(self.id)
