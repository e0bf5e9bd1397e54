"""Which controller leads: the one holding the lock. Two may run; the other waits to take over.

On PostgreSQL the lock is a session-level advisory lock held on a connection of its own: if the leader
dies, even by SIGKILL, the server closes its session and the lock is free for the standby within
seconds. On SQLite (one machine) it is an exclusive `flock` on a file beside the database, released by
the kernel when the process ends.
"""

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from tiffin.store.db import Database

ADVISORY_LOCK_KEY = 7_469_666_669  # "tiffi": one key for every Tiffin controller of a database
_TRY_LOCK = text(f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})")


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; whether this process holds it now."""
        ...

    def held(self) -> bool:
        """Whether the lock is still ours (the connection holding it is alive)."""
        ...

    def release(self) -> None: ...


class AdvisoryLock:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: Connection | None = None

    def try_acquire(self) -> bool:
        if self._connection is None:
            self._connection = self._db.engine.connect()
        try:
            taken = bool(
                self._connection.execute(text(f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})")).scalar()
            )
            self._connection.commit()
        except SQLAlchemyError:
            self._drop()
            return False
        return taken

    def held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
        except SQLAlchemyError:
            self._drop()
            return False
        return True

    def release(self) -> None:
        self._drop()

    def _drop(self) -> None:
        """Close the lock's database session for good (not back to the pool, where it would live on
        holding the lock): its advisory locks go with it."""
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.invalidate()
                self._connection.close()
            self._connection = None


class FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def leader_lock(db: Database, lock_file: Path) -> LeaderLock:
    """The advisory lock on PostgreSQL, a lock file next to a SQLite database."""
    if db.engine.dialect.name == "postgresql":
        return AdvisoryLock(db)
    return FileLock(lock_file)
