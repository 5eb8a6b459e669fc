"""Connections, transactions and error translation shared by the SQLite controllers.

SQLite connections must not be shared between threads while a statement is
running, so every thread gets its own connection. Every public storage
operation runs inside one explicit transaction from ``Database.read`` or
``Database.write``; writes start with ``BEGIN IMMEDIATE`` so the write lock is
taken before anything is read, which is what makes claim selection and
sequence allocation race-free across threads and processes.
"""

from __future__ import annotations

import contextlib
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

    __slots__ = ("conn", "level", "__weakref__")

    def __init__(self, conn: sqlite3.Connection, level: str) -> None:
        self.conn = conn
        self.level = level  # the connection's PRAGMA synchronous now


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
        self.path = path
        self.synchronous = synchronous
        self.consume_synchronous = consume_synchronous or synchronous
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
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
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
            holder = _Holder(conn, self.synchronous)
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

    @contextlib.contextmanager
    def write(self, *, consume: bool = False) -> Iterator[sqlite3.Connection]:
        """A read-modify-write transaction holding the write lock from its first statement.

        ``consume``: a claim or delete, committed at ``consume_synchronous``.
        Losing one to a power failure only makes messages deliverable again,
        which at-least-once delivery already allows; a post never is.
        """
        if self.consume_synchronous != self.synchronous:
            self._set_level(self.consume_synchronous if consume else self.synchronous)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    def _set_level(self, level: str) -> None:
        """Switch this thread's connection to ``level`` (outside a transaction), if it is not there."""
        conn = self.connection()
        holder: _Holder = self._local.holder
        if holder.level != level:
            try:
                conn.execute(f"PRAGMA synchronous = {level}")
            except sqlite3.Error as exc:
                raise unavailable(exc) from exc
            holder.level = level

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
