"""Claims: leases on batches of messages, plus dead-lettering at claim time.

Selection, tagging and dead-letter moves of one claim happen in a single
Lua script (``lua_claims.CLAIM_CREATE``); Redis runs scripts one at a time,
so two claims can never pick the same message, whichever clients run them.
"""

from __future__ import annotations

from zaqar import randomness
from zaqar.storage import base, errors
from zaqar.storage.redis.common import Backend, IdConflict, is_claim_id, messages_from_reply, num
from zaqar.storage.redis.messages import SPARE_TAILS, id_tails


class ClaimController(base.ClaimController):
    def __init__(self, backend: Backend, clock: base.Clock) -> None:
        self._backend = backend
        self._clock = clock

    def create(
        self,
        project: str | None,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: base.DeadLetter | None = None,
    ) -> tuple[str | None, list[base.Message]]:
        if limit <= 0:
            return None, []
        now = float(self._clock())
        claim_id = randomness.uuid4_hex()
        lease = [num(now + ttl), num(now + ttl + grace), str(int(ttl + grace)), str(int(ttl))]
        args = [num(now), claim_id, str(limit), *lease, *self._dead_letter_args(dead_letter, now)]
        target = queue if dead_letter is None else dead_letter.queue
        keys = [
            self._backend.queue_key(project, queue),
            self._backend.queue_key(project, target),
            self._backend.index_key(project),
        ]
        try:
            status, *flat = self._backend.run("claim_create", keys, args)
        except IdConflict:
            raise errors.MessageConflict(queue=target, project=project) from None
        if status != "ok":
            return None, []
        return claim_id, messages_from_reply(flat, now)

    @staticmethod
    def _dead_letter_args(dead_letter: base.DeadLetter | None, now: float) -> list[str]:
        if dead_letter is None:
            return ["0", "0", "", "", ""]
        args = ["1", str(int(dead_letter.max_claim_count)), dead_letter.queue]
        if dead_letter.ttl is None:
            args += ["", ""]
        else:
            args += [num(now + dead_letter.ttl), str(int(dead_letter.ttl))]
        return args + id_tails(SPARE_TAILS)

    def get(self, project: str | None, queue: str, claim_id: str) -> base.Claim:
        if not is_claim_id(claim_id):
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
        now = float(self._clock())
        key = self._backend.queue_key(project, queue)
        status, *rest = self._backend.run("claim_get", [key], [claim_id, num(now)])
        if status != "ok":
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
        ttl, updated, *flat = rest
        # The claim lists its messages in the post order it took them in.
        messages = messages_from_reply(flat, now)
        return base.Claim(id=claim_id, ttl=int(ttl), age=int(now - float(updated)), messages=messages)

    def update(self, project: str | None, queue: str, claim_id: str, *, ttl: int, grace: int) -> None:
        if not is_claim_id(claim_id):
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)
        now = float(self._clock())
        lease = [num(now + ttl), num(now + ttl + grace), str(int(ttl + grace)), str(int(ttl))]
        key = self._backend.queue_key(project, queue)
        if self._backend.run("claim_update", [key], [claim_id, num(now), *lease]) != "ok":
            raise errors.ClaimDoesNotExist(cid=claim_id, queue=queue, project=project)

    def delete(self, project: str | None, queue: str, claim_id: str) -> None:
        if not is_claim_id(claim_id):
            return
        self._backend.run("claim_delete", [self._backend.queue_key(project, queue)], [claim_id])
