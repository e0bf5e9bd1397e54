"""The shim: the one process that owns a local replica's whole process tree, and outlives Tiffin.

Run as `python -m tiffin.backends.shim <replica_dir> [options] -- <command...>`, normally as PID 1 of
a fresh PID namespace (see `isolation`). It starts the command with its output piped into rotating
log files, forwards SIGTERM to it, enforces the memory limit (summed RSS of the tree) and the CPU
pinning, and when the command ends, or the grace period after SIGTERM runs out, kills every process
left in the tree (bentoml workers start their own session and would otherwise keep serving). It
then writes `exit.json` with the reason and exits. When the shim is PID 1 its own death, even by
SIGKILL, makes the kernel kill the rest of the namespace.

Signals are blocked and taken with `sigtimedwait`, so the loop reacts at once to SIGTERM and to
children exiting, with no handler races.
"""

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from tiffin.backends.isolation import become_subreaper
from tiffin.backends.logfiles import DEFAULT_FILES, DEFAULT_MAX_BYTES, NOTE_PREFIX, RotatingLog
from tiffin.backends.processes import describe_wait_status, kill_all, tree
from tiffin.backends.replica_dir import ExitRecord, ReplicaPaths, write_exit, write_json

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
OOM_REASON = "OOMKilled"
_KILL_DEADLINE_S = 5.0
_PUMP_JOIN_S = 2.0
_EXIT_SPAWN_FAILED = 127


@dataclass(frozen=True)
class Options:
    replica_dir: Path
    command: list[str]
    memory_bytes: int
    cpu_cores: tuple[int, ...]
    grace_s: float
    tick_s: float
    cwd: Path
    log_max_bytes: int
    log_files: int


def parse(argv: Sequence[str]) -> Options:
    """Options from `<replica_dir> [options] -- <command...>`."""
    if "--" not in argv:
        raise SystemExit("usage: python -m tiffin.backends.shim REPLICA_DIR [options] -- COMMAND...")
    split = list(argv).index("--")
    parser = argparse.ArgumentParser(prog="tiffin.backends.shim")
    parser.add_argument("replica_dir", type=Path)
    parser.add_argument("--memory-bytes", type=int, default=0)
    parser.add_argument("--cpus", default="")
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--tick", type=float, default=0.25)
    parser.add_argument("--cwd", type=Path, default=None)
    parser.add_argument("--log-max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--log-files", type=int, default=DEFAULT_FILES)
    known = parser.parse_args(argv[:split])
    return Options(
        replica_dir=known.replica_dir,
        command=list(argv[split + 1 :]),
        memory_bytes=known.memory_bytes,
        cpu_cores=tuple(int(core) for core in known.cpus.split(",") if core),
        grace_s=known.grace,
        tick_s=known.tick,
        cwd=known.cwd or known.replica_dir,
        log_max_bytes=known.log_max_bytes,
        log_files=known.log_files,
    )


def in_pid_namespace() -> bool:
    return os.getpid() == 1


def proc_pid() -> int:
    """This process's PID as /proc names it (outside our namespace, when we are its PID 1)."""
    return int(os.readlink("/proc/self"))


def note(log: RotatingLog, message: str) -> None:
    log.write(f"{NOTE_PREFIX}{message}\n".encode())


def spawn(options: Options) -> tuple[int, int]:
    """Start the command with stdout and stderr on a pipe; returns (pid, read end of the pipe)."""
    read_end, write_end = os.pipe()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_end, 1),
        (os.POSIX_SPAWN_DUP2, write_end, 2),
    ]
    try:
        pid = os.posix_spawnp(
            options.command[0],
            options.command,
            dict(os.environ),
            file_actions=actions,
            setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *SIGNALS),
        )
    except OSError:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return pid, read_end


def pump(read_end: int, log: RotatingLog) -> threading.Thread:
    """Copy the command's output into the log until every writer has closed the pipe."""

    def copy() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                log.write(chunk)

    thread = threading.Thread(target=copy, name="shim-log", daemon=True)
    thread.start()
    return thread


class Supervisor:
    """Watches the command until it ends, is stopped, or breaks a limit."""

    def __init__(self, options: Options, child: int, log: RotatingLog) -> None:
        self._options = options
        self._child = child
        self._log = log
        self._me = psutil.Process(proc_pid())
        self._paths = ReplicaPaths(options.replica_dir)
        self._status: int | None = None
        self._term_deadline: float | None = None
        self._verdict: str | None = None
        self._tree_seen: list[list[float]] = []

    def run(self) -> ExitRecord:
        """Supervise, then kill whatever is left of the tree; how the command ended."""
        while self._status is None and self._verdict is None:
            self._reap()
            if self._status is None:
                self._check()
            if self._status is None and self._verdict is None:
                self._wait_for_signal()
        self._kill_everything()
        return self._record()

    def _wait_for_signal(self) -> None:
        received = signal.sigtimedwait(SIGNALS, self._options.tick_s)
        if received is not None and received.si_signo in (signal.SIGTERM, signal.SIGINT):
            self._terminate()

    def _terminate(self) -> None:
        if self._term_deadline is None:
            note(self._log, "SIGTERM received: stopping the replica")
            self._term_deadline = time.monotonic() + self._options.grace_s
            _send(self._child, signal.SIGTERM)

    def _check(self) -> None:
        watched = self._options.memory_bytes or not in_pid_namespace()
        processes = tree(self._me)[1:] if watched else []
        if not in_pid_namespace():
            self._record_tree(processes)
        if self._term_deadline is not None and time.monotonic() > self._term_deadline:
            note(self._log, f"still running {self._options.grace_s:g} s after SIGTERM: killing it")
            self._verdict = f"killed: still running {self._options.grace_s:g} s after SIGTERM"
        elif self._options.memory_bytes:
            self._check_memory(_rss(processes), self._options.memory_bytes)

    def _check_memory(self, used: int, limit: int) -> None:
        if used > limit:
            note(self._log, f"using {_mib(used)} of memory, over its limit of {_mib(limit)}: killing it")
            self._verdict = OOM_REASON

    def _record_tree(self, processes: list[psutil.Process]) -> None:
        """Without a namespace, leave the tree on disk so Tiffin can kill it if we die."""
        seen = sorted([p.pid, p.create_time()] for p in processes if p.is_running())
        if seen != self._tree_seen:
            self._tree_seen = seen
            write_json(self._paths.tree, seen)

    def _reap(self, block_s: float = 0.0) -> bool:
        """Reap exited children (orphans end up here too); whether any child is left."""
        deadline = time.monotonic() + block_s
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == self._child:
                self._status = status
            if pid == 0 and time.monotonic() >= deadline:
                return True
            if pid == 0:
                time.sleep(0.01)

    def _kill_everything(self) -> None:
        deadline = time.monotonic() + _KILL_DEADLINE_S
        while time.monotonic() < deadline and self._kill_round() and self._reap(block_s=0.05):
            pass
        self._reap()

    def _kill_round(self) -> bool:
        """SIGKILL every other process of the tree; whether there was any."""
        if in_pid_namespace():
            try:
                os.kill(-1, signal.SIGKILL)  # as PID 1: every other process in our namespace
            except ProcessLookupError:
                return False
            return True
        processes = tree(self._me)[1:]
        kill_all(processes)
        return bool(processes)

    def _record(self) -> ExitRecord:
        status = self._status
        how = describe_wait_status(status) if status is not None else "killed"
        if self._verdict is not None:
            how = self._verdict
        elif self._term_deadline is not None:
            how = f"stopped ({how})"
        if status is not None and os.WIFSIGNALED(status):
            return ExitRecord(reason=how, signal=os.WTERMSIG(status))
        code = None if status is None else os.waitstatus_to_exitcode(status)
        return ExitRecord(reason=how, exit_code=code)


def _send(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"


def _prepare(options: Options) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    if not in_pid_namespace() and not become_subreaper():
        print("tiffin shim: could not become a child subreaper", file=sys.stderr)
    if options.cpu_cores:
        try:
            os.sched_setaffinity(0, options.cpu_cores)  # inherited by everything the command starts
        except OSError as error:
            print(f"tiffin shim: could not pin to CPUs {options.cpu_cores}: {error}", file=sys.stderr)
    os.chdir(options.cwd)


def run(options: Options) -> int:
    """Run the command under supervision; the shim's exit code."""
    _prepare(options)
    paths = ReplicaPaths(options.replica_dir)
    log = RotatingLog(paths.output_log, options.log_max_bytes, options.log_files)
    try:
        child, read_end = spawn(options)
    except OSError as error:
        record = ExitRecord(reason=f"could not start {options.command[0]}: {error.strerror}")
        note(log, record.reason)
        write_exit(paths, ExitRecord(record.reason, exit_code=_EXIT_SPAWN_FAILED))
        return _EXIT_SPAWN_FAILED
    copier = pump(read_end, log)
    record = Supervisor(options, child, log).run()
    copier.join(_PUMP_JOIN_S)
    note(log, f"replica ended: {record.reason}")
    write_exit(paths, record)
    log.close()
    return _shim_exit_code(record)


def _shim_exit_code(record: ExitRecord) -> int:
    if record.signal is not None:
        return 128 + record.signal
    return 1 if record.exit_code is None else record.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
