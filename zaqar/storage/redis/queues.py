"""Queue records, their metadata and their statistics."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from zaqar.storage import base, errors
from zaqar.storage.redis.common import QUEUE_SUFFIXES, Backend, num

_MISSING = object()

# Names fetched per ZRANGEBYLEX round when filters may reject some of them.
_FILTERED_CHUNK = 100

# How often update_metadata reads, changes and tries to store in all before
# giving up with Conflict. Every lost round means another update was stored,
# so only a queue whose metadata is rewritten without pause can exhaust it.
_UPDATE_ATTEMPTS = 100
# Upper bound of the random pause (seconds) after a lost round.
_UPDATE_BACKOFF = 0.002


def _matches(metadata: Mapping[str, Any], filters: Mapping[str, Any] | None) -> bool:
    return all(metadata.get(key, _MISSING) == value for key, value in (filters or {}).items())


class QueueController(base.QueueController):
    def __init__(self, backend: Backend, clock: base.Clock) -> None:
        self._backend = backend
        self._clock = clock

    def create(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> bool:
        keys = [self._backend.queue_key(project, name), self._backend.index_key(project)]
        return bool(self._backend.run("queue_create", keys, [name, json.dumps(dict(metadata))]))

    def exists(self, project: str | None, name: str) -> bool:
        with self._backend.translated():
            return bool(self._backend.client.exists(self._backend.queue_key(project, name)))

    def get_metadata(self, project: str | None, name: str) -> dict[str, Any]:
        # PERF: cached (the raw JSON, decoded per call so callers may change what they get):
        # every post and claim reads it, and a round trip costs ~60-120 µs of client CPU.
        key = self._backend.queue_key(project, name)
        raw = self._backend.cache.get(key, lambda: self._read_metadata(key))
        if raw is None:
            raise errors.QueueDoesNotExist(name=name, project=project)
        metadata: dict[str, Any] = json.loads(raw)
        return metadata

    def _read_metadata(self, key: str) -> str | None:
        with self._backend.translated():
            raw: str | None = self._backend.client.hget(key, "meta")
        return raw

    def set_metadata(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> None:
        key = self._backend.queue_key(project, name)
        try:
            stored = self._backend.run("queue_set_metadata", [key], [json.dumps(dict(metadata)),
                                                                     self._backend.channel])
        finally:
            self._backend.cache.invalidate(key)  # also after a lost reply: the script may have run
        if not stored:
            raise errors.QueueDoesNotExist(name=name, project=project)

    def update_metadata(
        self,
        project: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """Optimistic read-change-store: the store is a compare-and-set on the raw JSON.

        ``change`` is Python, so it cannot run inside a script; the script
        stores its result only if ``meta`` still holds the exact string that
        was read, else the whole round runs again. Comparing the field itself
        (rather than WATCHing the queue hash) means posts and claims, which
        rewrite other fields of that hash, never force a rerun.
        """
        key = self._backend.queue_key(project, name)
        try:
            return self._update_metadata(key, project, name, change)
        finally:
            self._backend.cache.invalidate(key)

    def _update_metadata(
        self, key: str, project: str | None, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        for _ in range(_UPDATE_ATTEMPTS):
            raw = self._read_metadata(key)  # never the cache: the compare-and-set needs the stored text
            if raw is None:
                raise errors.QueueDoesNotExist(name=name, project=project)
            updated = change(json.loads(raw))
            args = [raw, json.dumps(dict(updated)), self._backend.channel]
            stored = self._backend.run("queue_replace_metadata", [key], args)
            if stored == 1:
                return updated
            if stored == 0:
                raise errors.QueueDoesNotExist(name=name, project=project)
            # Real time, not the store's clock: this only spreads out the rerun.
            time.sleep(random.uniform(0, _UPDATE_BACKOFF))
        raise errors.Conflict()

    def delete(self, project: str | None, name: str) -> None:
        key = self._backend.queue_key(project, name)
        try:
            with self._backend.translated():
                # MULTI/EXEC: the record and everything under it go in one step.
                # UNLINK frees big hashes in the background instead of blocking.
                pipe = self._backend.client.pipeline(transaction=True)
                pipe.unlink(key, *(key + suffix for suffix in QUEUE_SUFFIXES))
                pipe.zrem(self._backend.index_key(project), name)
                pipe.publish(self._backend.channel, key)
                pipe.execute()
        finally:
            self._backend.cache.invalidate(key)

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
        chunk = limit if name is None and not filters else max(limit, _FILTERED_CHUNK)
        start = "-" if marker is None else "(" + marker
        index, records = self._backend.index_key(project), self._backend.queue_key(project, "")
        found: list[base.QueueInfo] = []
        while len(found) < limit:
            # PERF: one script reads a page of the index and the records of its queues: one round
            # trip, where ZRANGEBYLEX and a pipeline of HGETs took two and ~150 µs more client CPU.
            reply = self._backend.run("queue_list", [index], [records, start, chunk, name or ""])
            read, last = int(reply[0]), reply[1]
            for queue_name, raw in zip(reply[2::2], reply[3::2], strict=True):
                metadata = json.loads(raw)
                if _matches(metadata, filters):
                    found.append(base.QueueInfo(name=queue_name, metadata=metadata))
            if read < chunk:
                break
            start = "(" + last
        return found[:limit]

    def count(self, project: str | None) -> int:
        with self._backend.translated():
            return int(self._backend.client.zcard(self._backend.index_key(project)))

    def stats(self, project: str | None, name: str) -> base.QueueStats:
        now = float(self._clock())
        reply = self._backend.run("stats", [self._backend.queue_key(project, name)], [num(now)])
        total, claimed = int(reply[0]), int(reply[1])
        if total == 0:
            return base.QueueStats(total=0, claimed=0, oldest=None, newest=None, exists=bool(int(reply[2])))
        oldest = base.MessageStamp(id=reply[2], created=float(reply[3]))
        newest = base.MessageStamp(id=reply[4], created=float(reply[5]))
        return base.QueueStats(total=total, claimed=claimed, oldest=oldest, newest=newest, exists=True)
