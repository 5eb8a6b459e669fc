"""Queue records, their metadata and their statistics."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from zaqar.storage import base, errors
from zaqar.storage.cache import Uncached
from zaqar.storage.projects import project_key
from zaqar.storage.sqlite.common import Database
from zaqar.storage.sqlite.generations import GenerationCache

_MISSING = object()


def metadata_key(pk: str, name: str) -> str:
    """The cache key of a queue's metadata (the shared-counter cache, ``generations``)."""
    return f"m\x1f{pk}\x1f{name}"


def _matches(metadata: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    return all(metadata.get(key, _MISSING) == value for key, value in filters.items())


class QueueController(base.QueueController):
    def __init__(
        self, db: Database, clock: base.Clock, cache: GenerationCache | Uncached | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._cache = cache if cache is not None else Uncached()

    def create(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO queues (project, name, metadata, seq) VALUES (?, ?, ?, 0)",
                (project_key(project), name, json.dumps(dict(metadata))),
            )
            return cursor.rowcount == 1

    def exists(self, project: str | None, name: str) -> bool:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM queues WHERE project = ? AND name = ?", (project_key(project), name)
            ).fetchone()
        return row is not None

    def get_metadata(self, project: str | None, name: str) -> dict[str, Any]:
        # PERF: cached (the raw JSON, decoded per call so callers may change what they get):
        # every post and claim reads it (see ``generations`` for how other processes' writes show).
        pk = project_key(project)
        raw = self._cache.get(metadata_key(pk, name), lambda: self._read_metadata(pk, name))
        if raw is None:
            raise errors.QueueDoesNotExist(name=name, project=project)
        metadata: dict[str, Any] = json.loads(raw)
        return metadata

    def _read_metadata(self, pk: str, name: str) -> str | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT metadata FROM queues WHERE project = ? AND name = ?", (pk, name)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_metadata(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> None:
        pk = project_key(project)
        try:
            with self._db.write() as conn:
                cursor = conn.execute(
                    "UPDATE queues SET metadata = ? WHERE project = ? AND name = ?",
                    (json.dumps(dict(metadata)), pk, name),
                )
                if cursor.rowcount == 0:
                    raise errors.QueueDoesNotExist(name=name, project=project)
        finally:
            self._cache.invalidate(metadata_key(pk, name))  # also after a failed commit: it may have landed

    def update_metadata(
        self,
        project: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        pk = project_key(project)
        # BEGIN IMMEDIATE takes the write lock before the read, so concurrent
        # updates (from any thread or process) run one after another. An
        # exception from ``change`` rolls the transaction back unchanged.
        try:
            with self._db.write() as conn:
                row = conn.execute(
                    "SELECT metadata FROM queues WHERE project = ? AND name = ?", (pk, name)
                ).fetchone()
                if row is None:
                    raise errors.QueueDoesNotExist(name=name, project=project)
                updated = change(json.loads(row[0]))
                conn.execute(
                    "UPDATE queues SET metadata = ? WHERE project = ? AND name = ?",
                    (json.dumps(dict(updated)), pk, name),
                )
        finally:
            self._cache.invalidate(metadata_key(pk, name))
        return updated

    def delete(self, project: str | None, name: str) -> None:
        pk = project_key(project)
        try:
            with self._db.write() as conn:
                conn.execute("DELETE FROM messages WHERE project = ? AND queue = ?", (pk, name))
                conn.execute("DELETE FROM claims WHERE project = ? AND queue = ?", (pk, name))
                conn.execute("DELETE FROM queues WHERE project = ? AND name = ?", (pk, name))
        finally:
            self._cache.invalidate(metadata_key(pk, name))

    def list(
        self,
        project: str | None,
        *,
        marker: str | None = None,
        limit: int = 10,
        name: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[base.QueueInfo]:
        if limit <= 0:
            return []
        # instr() is a literal, case-sensitive substring test: no LIKE wildcards to escape.
        sql = "SELECT name, metadata FROM queues WHERE project = ?"
        params: list[Any] = [project_key(project)]
        if marker is not None:
            sql += " AND name > ?"
            params.append(marker)
        if name is not None:
            sql += " AND instr(name, ?) > 0"
            params.append(name)
        if not filters:
            sql += " ORDER BY name LIMIT ?"
            params.append(limit)
            with self._db.read() as conn:
                rows = conn.execute(sql, params).fetchall()
            return [base.QueueInfo(name=row[0], metadata=json.loads(row[1])) for row in rows]
        with self._db.read() as conn:
            return self._filtered(conn, sql + " ORDER BY name", params, filters, limit)

    @staticmethod
    def _filtered(
        conn: sqlite3.Connection, sql: str, params: list[Any], filters: Mapping[str, Any], limit: int
    ) -> list[base.QueueInfo]:
        """Walk the ordered rows, keeping metadata matches until the page is full.

        Filtering happens before the limit, so a page is short only at the end.
        """
        found: list[base.QueueInfo] = []
        for queue_name, raw in conn.execute(sql, params):
            metadata = json.loads(raw)
            if _matches(metadata, filters):
                found.append(base.QueueInfo(name=queue_name, metadata=metadata))
                if len(found) >= limit:
                    break
        return found

    def count(self, project: str | None) -> int:
        with self._db.read() as conn:
            (total,) = conn.execute(
                "SELECT COUNT(*) FROM queues WHERE project = ?", (project_key(project),)
            ).fetchone()
        return int(total)

    def stats(self, project: str | None, name: str) -> base.QueueStats:
        now = self._clock()
        pk = project_key(project)
        with self._db.read() as conn:
            total, claimed, oldest, newest = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(claim_id IS NOT NULL AND claim_expires > ?), 0),"
                " MIN(seq), MAX(seq) FROM messages WHERE project = ? AND queue = ? AND expires > ?",
                (now, pk, name, now),
            ).fetchone()
            if not total:
                return base.QueueStats(total=0, claimed=0, oldest=None, newest=None)
            first = self._stamp(conn, pk, name, oldest)
            last = self._stamp(conn, pk, name, newest)
        return base.QueueStats(total=int(total), claimed=int(claimed), oldest=first, newest=last)

    @staticmethod
    def _stamp(conn: sqlite3.Connection, pk: str, name: str, seq: int) -> base.MessageStamp:
        mid, created = conn.execute(
            "SELECT id, created FROM messages WHERE project = ? AND queue = ? AND seq = ?",
            (pk, name, seq),
        ).fetchone()
        return base.MessageStamp(id=mid, created=float(created))
