"""Messages: posting, listing, reading, deleting and popping."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from zaqar import randomness
from zaqar.storage import base, errors
from zaqar.storage.redis.common import (
    Backend,
    is_claim_id,
    is_message_id,
    message_from_reply,
    messages_from_reply,
    num,
)

# Extra random id tails sent with every post: only a dead-lettered message
# that kept its id can collide with a fresh one (same seq prefix and the same
# 32 random bits), so a handful of spares makes a conflict practically
# impossible while keeping the all-or-nothing check inside the script.
SPARE_TAILS = 8

# Queue entries one listing script call may examine before it hands back a
# cursor, so a page behind many hidden (claimed, delayed, echoed) messages
# never holds the server for long.
_LIST_BUDGET = 1000


def id_tails(count: int) -> list[str]:
    """``count`` random id tails of 8 hex digits."""
    # PERF: one urandom call for all of them (a post needs 1 + SPARE_TAILS): ~2 µs instead of ~6.
    drawn = randomness.token_hex(4 * count)
    return [drawn[i : i + 8] for i in range(0, 8 * count, 8)]


def _post_args(
    queue: str, drafts: Sequence[base.MessageDraft], client_id: str | None, now: float
) -> list[str]:
    # Serialised before the script runs, so a bad body fails before anything is stored.
    args = [queue, num(now), "0" if client_id is None else "1", client_id or "", str(len(drafts))]
    tails = id_tails(len(drafts) + SPARE_TAILS)
    for draft, tail in zip(drafts, tails, strict=False):
        ttl = int(draft.ttl)
        args += [json.dumps(draft.body), str(ttl), num(now + ttl), num(now + draft.delay), tail]
    return args + tails[len(drafts):]


class MessageController(base.MessageController):
    def __init__(self, backend: Backend, clock: base.Clock) -> None:
        self._backend = backend
        self._clock = clock

    def post(
        self,
        project: str | None,
        queue: str,
        drafts: Sequence[base.MessageDraft],
        client_id: str | None,
    ) -> list[str]:
        args = _post_args(queue, drafts, client_id, float(self._clock()))
        keys = [self._backend.queue_key(project, queue), self._backend.index_key(project)]
        status, *ids = self._backend.run("post", keys, args)
        if status != "ok":
            raise errors.MessageConflict(queue=queue, project=project)
        return list(ids)

    def list(
        self,
        project: str | None,
        queue: str,
        *,
        marker: str | None = None,
        limit: int = 10,
        echo: bool = False,
        client_id: str | None = None,
        include_claimed: bool = False,
        include_delayed: bool = False,
    ) -> list[base.Message]:
        if limit <= 0 or (marker is not None and not is_message_id(marker)):
            return []
        now = float(self._clock())
        hide = not echo and client_id is not None
        # A marker still stored here positions by its seq (a dead-lettered
        # message keeps its id but not its seq); a gone one by its id prefix.
        after = "0" if marker is None else str(int(marker[:16], 16))
        flags = ["1" if hide else "0", client_id or "", "1" if include_claimed else "0"]
        flags += ["1" if include_delayed else "0", str(_LIST_BUDGET)]
        key = self._backend.queue_key(project, queue)
        found: list[base.Message] = []
        stored_marker = marker or ""
        while len(found) < limit:
            args = [stored_marker, after, num(now), str(limit - len(found)), *flags]
            status, after, *flat = self._backend.run("list", [key], args)
            found += messages_from_reply(flat, now)
            if status == "done":
                break
            stored_marker = ""
        return found

    def get(self, project: str | None, queue: str, message_id: str) -> base.Message:
        found = self.get_many(project, queue, [message_id])
        if not found:
            raise errors.MessageDoesNotExist(mid=message_id, queue=queue, project=project)
        return found[0]

    def get_many(self, project: str | None, queue: str, ids: Sequence[str]) -> list[base.Message]:
        wanted = [mid for mid in dict.fromkeys(ids) if isinstance(mid, str)]
        if not wanted:
            return []
        now = float(self._clock())
        key = self._backend.queue_key(project, queue)
        with self._backend.translated():
            # MULTI/EXEC so record and body come from the same instant.
            pipe = self._backend.client.pipeline(transaction=True)
            pipe.hmget(key + ":msg", wanted)
            pipe.hmget(key + ":body", wanted)
            metas, bodies = pipe.execute()
        found: list[tuple[int, base.Message]] = []
        for mid, meta, body in zip(wanted, metas, bodies, strict=True):
            if meta is None or body is None:
                continue
            fields = json.loads(meta)
            if float(fields["e"]) <= now:
                continue
            found.append((int(fields["s"]), message_from_reply(mid, meta, body, now)))
        found.sort(key=lambda pair: pair[0])
        return [message for _, message in found]

    def delete(
        self,
        project: str | None,
        queue: str,
        message_id: str,
        claim_id: str | None = None,
    ) -> None:
        # A claim id that can never exist is a caller error whether or not the message does.
        if claim_id is not None and not is_claim_id(claim_id):
            raise errors.ClaimNotLive(mid=message_id, cid=claim_id)
        now = float(self._clock())
        args = [message_id, "0" if claim_id is None else "1", claim_id or "", num(now)]
        outcome = self._backend.run("delete", [self._backend.queue_key(project, queue)], args)
        if outcome == "claimed":
            raise errors.MessageIsClaimed(mid=message_id)
        if outcome == "not_claimed":
            raise errors.MessageNotClaimed(mid=message_id)
        if outcome == "not_live":
            raise errors.ClaimNotLive(mid=message_id, cid=claim_id)

    def delete_many(
        self,
        project: str | None,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None = None,
    ) -> None:
        cids = list(dict.fromkeys(claim_ids or ()))
        for cid in cids:
            if not is_claim_id(cid):
                raise errors.ClaimDoesNotExist(cid=cid, queue=queue, project=project)
        wanted = [mid for mid in dict.fromkeys(ids) if isinstance(mid, str)]
        if not wanted and not cids:
            return
        args: list[Any] = [num(float(self._clock())), str(len(cids)), *cids, *wanted]
        reply = self._backend.run("delete_many", [self._backend.queue_key(project, queue)], args)
        if reply[0] != "ok":
            raise errors.ClaimDoesNotExist(cid=reply[1], queue=queue, project=project)

    def pop(self, project: str | None, queue: str, limit: int) -> list[base.Message]:
        if limit <= 0:
            return []
        now = float(self._clock())
        reply = self._backend.run("pop", [self._backend.queue_key(project, queue)], [num(now), str(limit)])
        return messages_from_reply(reply[1:], now)
