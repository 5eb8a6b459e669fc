"""Connections, transactions and error translation shared by the SQLite controllers.

SQLite connections must not be shared between threads while a statement is
running, so every thread gets its own connection. Every public storage
operation runs inside one explicit transaction from ``Database.read`` or
``Database.write``; writes start with ``BEGIN IMMEDIATE`` so the write lock is
taken before anything is read, which is what makes claim selection and
sequence allocation race-free across threads and processes.

Durability (``synchronous=full``, the default) is group commit: connections
run at SQLite's ``synchronous=NORMAL`` (a commit writes its WAL frames but
does not fsync them), and a durable write returns only once the WAL file was
fdatasync'ed after its commit (``GroupSync``). A writer arriving while
another's sync is under way waits for the next one, which covers every commit
made meanwhile; so one fsync serves all the writers that commit together, and
the write lock is no longer held across an fsync. What that guarantees is what
SQLite's own ``FULL`` gives in WAL mode: an acknowledged write survives a power
loss.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator

from zaqar.storage import errors

# How long a statement waits for another connection's write lock before the
# database counts as unavailable.
BUSY_TIMEOUT_SECONDS = 30.0


def unavailable(exc: BaseException) -> errors.BackendUnavailable:
    """Wrap a low-level failure so callers see only storage errors."""
    return errors.BackendUnavailable(reason=f"{type(exc).__name__}: {exc}")


class _Holder:
    """Lives in a thread's local storage; its collection closes the thread's connection."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class GroupSync:
    """Makes commits durable with one fdatasync of the WAL for every writer waiting at that moment.

    ``wait`` is called after a commit returned. The first waiter with no sync
    under way syncs for everybody who had committed by then; those arriving
    during its sync wait, and the next leader syncs for them.
    """

    def __init__(self, path: str) -> None:
        self._path = path  # the database file; its WAL is ``path + "-wal"``
        self._cond = threading.Condition(threading.Lock())
        self._committed = 0  # commits that asked to be made durable
        self._synced = 0  # of those, the ones covered by a finished sync
        self._syncing = False
        self._fd: int | None = None
        self.syncs = 0  # fdatasync calls made (for tests and diagnostics)

    def wait(self) -> None:
        """Return once a sync that began after this thread's last commit has finished. Raises OSError."""
        with self._cond:
            self._committed += 1
            mine = self._committed
            while self._synced < mine:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing, target = True, self._committed
                self._cond.release()
                try:
                    self._sync()
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)

    def _sync(self) -> None:
        fd = self._wal_fd()
        os.fdatasync(fd)
        self.syncs += 1

    def _wal_fd(self) -> int:
        """The WAL, opened at the first sync after ``reopen``.

        # PERF: a stat per sync (to notice a replaced WAL) cost more CPU than the
        # sync's own system call on this machine; ``reopen`` is called instead
        # whenever this process opens a connection, the only time the file can
        # have been replaced: SQLite deletes the WAL when the last connection
        # closes, so while one of ours is open it stays the same file.
        """
        if self._fd is None:
            try:
                self._fd = os.open(self._path + "-wal", os.O_RDONLY)
            except FileNotFoundError:  # not in WAL mode: commits went to the file itself
                self._fd = os.open(self._path, os.O_RDONLY)
        return self._fd

    def reopen(self) -> None:
        """Open the WAL again at the next sync (a new connection may have recreated it)."""
        with self._cond:
            self._close_locked()

    def close(self) -> None:
        with self._cond:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._fd is not None and not self._syncing:
            os.close(self._fd)
            self._fd = None


def _close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    # A failed ROLLBACK means the connection is unusable; the caller already
    # raises, and the next BEGIN will report the real state of the database.
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


class Database:
    """One database file opened once per thread, with tracked connections."""

    def __init__(self, path: str, synchronous: str, consume_synchronous: str | None = None) -> None:
        """``synchronous`` and ``consume_synchronous`` (claims, deletes): ``FULL`` or ``NORMAL``."""
        self.path = path
        self.synchronous = synchronous
        self.consume_synchronous = consume_synchronous or synchronous
        self.group_sync = GroupSync(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        # One finalizer per opened connection; calling it closes the connection.
        self._finalizers: list[weakref.finalize] = []
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # only so close() may close other threads' connections
        )
        try:
            conn.execute("PRAGMA synchronous = NORMAL")  # FULL's fsync is GroupSync's, after the commit
        except sqlite3.Error:
            _close_quietly(conn)
            raise
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use.

        A finalizer on the thread-local holder closes the connection when the
        thread ends, so servers that start a thread per request do not leak
        file handles; ``close`` runs the remaining finalizers itself. The
        finalizer references only the connection, never this object, so a
        closed store can be garbage-collected.
        """
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None and not self._closed:
            return holder.conn
        with self._lock:
            if self._closed:
                raise errors.BackendUnavailable(reason="the SQLite store was closed")
            try:
                conn = self._open()
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc
            holder = _Holder(conn)
            self.group_sync.reopen()
            self._finalizers = [fin for fin in self._finalizers if fin.alive]
            self._finalizers.append(weakref.finalize(holder, _close_quietly, conn))
        self._local.holder = holder
        return conn

    def open_connections(self) -> int:
        """How many connections are still open (for tests and diagnostics)."""
        with self._lock:
            return sum(1 for fin in self._finalizers if fin.alive)

    def close(self) -> None:
        """Close every connection any thread opened; later use raises BackendUnavailable."""
        with self._lock:
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
        for fin in finalizers:
            fin()
        self.group_sync.close()

    @contextlib.contextmanager
    def write(self, *, consume: bool = False) -> Iterator[sqlite3.Connection]:
        """A read-modify-write transaction holding the write lock from its first statement.

        Returns once the commit is durable at ``synchronous`` (``consume``: a claim or
        delete, at ``consume_synchronous``). Losing a claim or delete to a power failure
        only makes messages deliverable again, which at-least-once delivery already
        allows; a post never is.
        """
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn
        if (self.consume_synchronous if consume else self.synchronous) == "FULL":
            try:
                self.group_sync.wait()
            except OSError as exc:
                raise unavailable(exc) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: all its statements see one snapshot (WAL)."""
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self.connection()
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise unavailable(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback_quietly(conn)
            raise unavailable(exc) from exc
        except BaseException:
            _rollback_quietly(conn)
            raise
