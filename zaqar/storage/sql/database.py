"""The engine, transactions and error translation shared by the SQL controllers.

Every public storage operation runs as one function inside one transaction
(``Database.read`` or ``Database.write``), so that the whole function can be
run again when the server aborts the transaction to break a deadlock or a
serialization conflict, which is the normal way for a database to resolve
races. Writes run at READ COMMITTED and take row locks explicitly
(``SELECT ... FOR UPDATE``); reads run at REPEATABLE READ so all statements
of one read see one snapshot, as they do in the SQLite store.

Failures are told apart, so that neither passes for the other:

* the server cannot be reached, or refuses the setup: ``BackendUnavailable``
  (503, and a warning: an operator must act);
* the server aborted the transaction to resolve a race: run again;
* the server refused a value (a data error: NUL in text, a number out of
  range, text the encoding cannot carry): ``DataRefused``, which is no storage
  error at all. The API layer validates input so that no such value gets
  here (one that does is a bug there: a 500, never a "try again" outage).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from zaqar.storage import errors
from zaqar.storage.sql.tables import queues

T = TypeVar("T")
Work = Callable[[sa.Connection], T]

SUPPORTED_BACKENDS = frozenset({"postgresql", "mysql", "mariadb"})

# Pool settings a URI may carry as query options; they are removed from the
# URL before it reaches the database client, which would reject them.
_POOL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "pool_size": int,
    "max_overflow": int,
    "pool_timeout": float,
    "pool_recycle": int,
}
# Enough connections for the default 16 HTTP plus 16 websocket worker threads.
_POOL_DEFAULTS: dict[str, Any] = {"pool_size": 10, "max_overflow": 22, "pool_timeout": 30.0}
_CONNECT_TIMEOUT = 10

# How often a transaction the server aborted to resolve a race is tried in all.
ATTEMPTS = 6
# Server error codes meaning "your transaction lost a race, run it again".
_PG_RETRY = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_MYSQL_RETRY = frozenset({1213, 1020})  # deadlock, record changed since last read (MariaDB)

_CHUNK = 500

# Failures to reach the server, as opposed to mistakes in the setup.
_CONNECTION_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


class DataRefused(ValueError):
    """The database refused a value of the request as data (SQLSTATE class 22 and the like).

    Not a ``StorageError``: retrying cannot help and nothing is down. Raised
    only when input validation missed a value the store cannot hold.
    """


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def refused(exc: BaseException) -> DataRefused:
    """The error for a value the server (or its client library) refused; the statement is left out."""
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return DataRefused(f"The database refused a value: {_first_line(cause)}")


def unavailable(exc: BaseException) -> errors.BackendUnavailable:
    """Wrap a low-level failure so callers see only storage errors."""
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return errors.BackendUnavailable(reason=f"{type(exc).__name__}: {detail}")


def chunked(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """Slices small enough for one IN list, however many ids a caller sends."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def parse_uri(uri: str) -> tuple[sa.URL, dict[str, Any]]:
    """Split a store URI into the database URL and the engine's pool settings.

    Any SQLAlchemy URL of a supported server is accepted
    (``postgresql://``, ``postgresql+psycopg://``, ``mysql+pymysql://``,
    ...); ``pool_size``, ``max_overflow``, ``pool_timeout`` and
    ``pool_recycle`` query options tune the connection pool.
    """
    try:
        url = sa.make_url(uri)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise errors.BackendUnavailable(reason=f"not a database URL: {uri!r}") from exc
    backend = url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        known = ", ".join(sorted(SUPPORTED_BACKENDS))
        raise errors.BackendUnavailable(reason=f"unsupported database {backend!r}; use one of {known}")
    options = dict(_POOL_DEFAULTS)
    for name, convert in _POOL_OPTIONS.items():
        if name in url.query:
            raw = url.query[name]
            value = raw[-1] if isinstance(raw, tuple) else raw
            try:
                options[name] = convert(value)
            except ValueError as exc:
                raise errors.BackendUnavailable(reason=f"bad {name} in the store URI: {value!r}") from exc
    return url.difference_update_query(list(_POOL_OPTIONS)), options


def create_engine(uri: str) -> sa.Engine:
    """An engine whose pool checks connections before use, so a database restart heals by itself."""
    url, options = parse_uri(uri)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = _CONNECT_TIMEOUT
    try:
        return sa.create_engine(
            url,
            pool_pre_ping=True,
            isolation_level="READ COMMITTED",
            connect_args=connect_args,
            **options,
        )
    except (sa_exc.ArgumentError, ImportError, TypeError) as exc:
        raise unavailable(exc) from exc


def _error_code(exc: sa_exc.DBAPIError) -> object:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is not None:
        return sqlstate
    args = getattr(orig, "args", ())
    return args[0] if args else None


def is_transient(exc: sa_exc.DBAPIError) -> bool:
    """Whether the server aborted the transaction only to resolve a race, so a rerun may succeed."""
    code = _error_code(exc)
    return code in _PG_RETRY or code in _MYSQL_RETRY


def is_unreachable(exc: errors.BackendUnavailable) -> bool:
    """Whether the failure was reaching the server (which may come back), not a setup mistake."""
    return isinstance(exc.__cause__, _CONNECTION_ERRORS)


class Database:
    """The engine plus the transaction runner every controller goes through.

    ``prepare`` (the schema migration) runs once, before the first
    transaction that finds the server reachable: the service may start
    before its database does, as it may with Redis.
    """

    def __init__(self, engine: sa.Engine, prepare: Callable[[sa.Engine], object]) -> None:
        self.engine = engine
        self._prepare = prepare
        self._prepared = False
        self._prepare_lock = threading.Lock()
        self._closed = False

    def ensure_prepared(self) -> None:
        """Run ``prepare`` unless it already succeeded; BackendUnavailable while the server is away."""
        if self._prepared:
            return
        with self._prepare_lock:
            if not self._prepared:
                self._prepare(self.engine)
                self._prepared = True

    def write(self, work: Work[T], *, conflict: Callable[[], errors.StorageError] | None = None) -> T:
        """Run ``work`` in a READ COMMITTED transaction, rerunning it when it lost a race.

        An integrity error can only come from a race or an unlucky random id
        (the statements never violate constraints otherwise), so it is rerun
        too; ``conflict`` builds the error raised if that keeps happening.
        """
        return self._run(work, None, conflict or errors.Conflict)

    def read(self, work: Work[T]) -> T:
        """Run ``work`` in a REPEATABLE READ transaction: one snapshot for all its statements."""
        return self._run(work, "REPEATABLE READ", errors.Conflict)

    def _run(self, work: Work[T], isolation: str | None, conflict: Callable[[], errors.StorageError]) -> T:
        if self._closed:
            raise errors.BackendUnavailable(reason="the SQL store was closed")
        self.ensure_prepared()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._once(work, isolation)
            except sa_exc.IntegrityError as exc:
                if attempt == ATTEMPTS:
                    raise conflict() from exc
            except sa_exc.DataError as exc:
                raise refused(exc) from exc
            except sa_exc.DBAPIError as exc:
                if attempt == ATTEMPTS or not is_transient(exc):
                    raise unavailable(exc) from exc
            except sa_exc.SQLAlchemyError as exc:
                raise unavailable(exc) from exc
            except UnicodeEncodeError as exc:  # an unpaired surrogate: the client library cannot send it
                raise refused(exc) from exc
            # Real time, not the store's clock: this only spreads out the rerun.
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    def _once(self, work: Work[T], isolation: str | None) -> T:
        with self.engine.connect() as conn:
            if isolation is not None:
                conn.execution_options(isolation_level=isolation)
            with conn.begin():
                return work(conn)

    def ping(self) -> None:
        """Raise unless the server answers and the store's tables are there."""
        self.read(lambda conn: conn.execute(sa.select(queues.c.name).limit(1)).all())

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Drop every pooled connection; later use raises BackendUnavailable."""
        self._closed = True
        self.engine.dispose()
