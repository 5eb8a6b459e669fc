"""``Api.handle``: the one entry point every transport calls.

Validation that applies to every operation, the storage-error mapping and
the catch-all for bugs happen here once, so handlers hold only their
operation's logic and every transport gets identical results.
"""

from __future__ import annotations

import logging

from zaqar.api import errors, handlers, validation
from zaqar.api.context import Context
from zaqar.api.operations import OPERATIONS, Operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors

LOG = logging.getLogger(__name__)

handlers.load()


class Api:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._operations = dict(OPERATIONS)
        self._limiter = ctx.rate_limiter

    @property
    def actions(self) -> frozenset[str]:
        """Every operation this server offers with its current features."""
        return frozenset(name for name, op in self._operations.items() if self._enabled(op))

    def _enabled(self, op: Operation) -> bool:
        return op.feature is None or bool(getattr(self.ctx.features, op.feature))

    def handle(self, req: Request, *, limited: bool = True) -> Response:
        """Answer one request; ``limited=False`` for the server's own calls (cleanup), never throttled."""
        limiter = self._limiter
        if limited and limiter is not None and req.project_id is not None:
            try:
                limiter.check(req.project_id)  # first: a refused request must cost next to nothing
            except errors.ApiError as exc:
                return error_response(exc)
        op = self._operations.get(req.action)
        try:
            if op is None:
                raise errors.BadRequest(f"{req.action} is not a valid action")
            if not self._enabled(op):
                raise errors.NotFound(f"{req.action} is not available on this server.")
            if op.queue:
                validation.queue_identification(req.params.get("queue_name"), req.project_id)
            if op.policy is not None and not self.ctx.authorize(op.policy, req.roles):
                raise errors.Forbidden()
            return op.func(self.ctx, req)
        except errors.ApiError as exc:
            return error_response(exc)
        except storage_errors.StorageError as exc:
            assert op is not None
            # NOTE: outages and "pooling on but no pool" need an operator; everything else is the client's.
            if isinstance(exc, storage_errors.BackendUnavailable | storage_errors.NoPoolFound):
                LOG.warning("%s failed: %s", req.action, exc)
            return error_response(errors.from_storage(exc, op.unavailable))
        except Exception as exc:
            LOG.exception("unexpected failure in %s", req.action)
            failure = errors.InternalError(str(exc) or type(exc).__name__, summary="Unexpected error.")
            return error_response(failure)


def error_response(exc: errors.ApiError) -> Response:
    return Response(exc.status, exc.to_dict(), dict(exc.headers), data=exc)
