"""Claim operations: create, get, update (renew), delete (release)."""

from __future__ import annotations

from zaqar.api import errors, metadata, validation, views
from zaqar.api.context import Context
from zaqar.api.handlers.common import queue_metadata
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response


def _ttl(ctx: Context, value: int) -> int:
    if not 60 <= value <= ctx.limits.max_claim_ttl:
        raise errors.BadRequest(
            f"The TTL for a claim may not exceed {ctx.limits.max_claim_ttl} seconds, "
            "and must be at least 60 seconds long."
        )
    return value


def _grace(ctx: Context, value: int) -> int:
    if not 60 <= value <= ctx.limits.max_claim_grace:
        raise errors.BadRequest(
            f"The grace for a claim may not exceed {ctx.limits.max_claim_grace} seconds, "
            "and must be at least 60 seconds long."
        )
    return value


def _lease(ctx: Context, req: Request) -> tuple[int, int]:
    """Claim ttl and grace; omitted values take the configured defaults, not the claim's."""
    ttl = validation.integer(req.params, "ttl", ctx.limits.default_claim_ttl)
    grace = validation.integer(req.params, "grace", ctx.limits.default_claim_grace)
    assert ttl is not None and grace is not None
    return ttl, grace


@operation("claim_create", unavailable="Claim could not be created.")
def claim_create(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    ttl, grace = _lease(ctx, req)
    _ttl(ctx, ttl)
    maximum = ctx.limits.max_messages_per_claim_or_pop
    limit = validation.limit(
        validation.integer(req.params, "limit"), 10, maximum, text=validation.PAGE_LIMIT_MAY_NOT
    )
    _grace(ctx, grace)
    dead_letter = metadata.dead_letter(queue_metadata(ctx, req, queue))
    claim_id, claimed = ctx.store.claims.create(
        req.project_id, queue, ttl=ttl, grace=grace, limit=limit, dead_letter=dead_letter
    )
    if claim_id is None:
        return Response(204, data=(None, []))
    checksum = ctx.features.enable_checksum
    body = {"messages": [views.message(m, queue, with_checksum=checksum) for m in claimed]}
    return Response(201, body, {"Location": f"/v2/queues/{queue}/claims/{claim_id}"},
                    data=(claim_id, claimed))


@operation("claim_get", unavailable="Claim could not be queried.")
def claim_get(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    claim_id = validation.required_string(req.params, "claim_id")
    claim = ctx.store.claims.get(req.project_id, queue, claim_id)
    checksum = ctx.features.enable_checksum
    body = {
        "age": claim.age,
        "ttl": claim.ttl,
        "href": f"/v2/queues/{queue}/claims/{claim.id}",
        "messages": [views.message(m, queue, with_checksum=checksum) for m in claim.messages],
    }
    return Response(200, body, data=claim)


@operation("claim_update", unavailable="Claim could not be updated.")
def claim_update(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    claim_id = validation.required_string(req.params, "claim_id")
    ttl, grace = _lease(ctx, req)
    _ttl(ctx, ttl)
    _grace(ctx, grace)  # NOTE: upstream skips this on renew; unbounded grace overflowed storage.
    ctx.store.claims.update(req.project_id, queue, claim_id, ttl=ttl, grace=grace)
    return Response(204, data=claim_id)


@operation("claim_delete", unavailable="Claim could not be deleted.")
def claim_delete(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    claim_id = validation.required_string(req.params, "claim_id")
    ctx.store.claims.delete(req.project_id, queue, claim_id)
    return Response(204, data=claim_id)
