"""Message operations: post, list, get, get many, delete, delete many, pop."""

from __future__ import annotations

from typing import Any

from zaqar.api import errors, validation, views
from zaqar.api.context import Context
from zaqar.api.handlers.common import encoded_size, queue_metadata
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors
from zaqar.storage.base import MessageDraft

_POP_TEXT = "Pop value must be at least 1 and may not be greater than {max}."
_IDS_TEXT = "ids parameter should have at least 1 and not greater than {max} values."


def _field_error(text: str) -> errors.InvalidBody:
    return errors.InvalidBody(text, detail=f"Bad request. {text}")


def _check_post_size(ctx: Context, req: Request, meta: dict[str, Any], messages: Any) -> None:
    limit = ctx.limits.max_messages_post_size
    queue_cap = meta.get("_max_messages_post_size")
    if isinstance(queue_cap, int) and queue_cap:
        cap = min(queue_cap, limit)
        text = (
            f"Message collection size is too large. The max size for current queue is {cap}. "
            f"It is calculated by max size = min(max_messages_post_size_config: {limit}, "
            f"max_messages_post_size_queue: {queue_cap})."
        )
    else:
        cap, text = limit, f"Message collection size is too large. Max size {limit}"
    if encoded_size(req, messages) > cap:
        raise errors.BadRequest(text)


def _draft(ctx: Context, item: Any, meta: dict[str, Any]) -> MessageDraft:
    if not isinstance(item, dict):
        raise _field_error("Document type not supported.")
    if "body" not in item:
        raise _field_error('Missing "body" field.')
    for field in ("ttl", "delay"):
        # NOTE: JSON true/false pass as ints (Python bool is an int) and fail the range check [U].
        if field in item and not isinstance(item[field], int):
            raise _field_error(f'The value of the "{field}" field must be a int.')
    limits = ctx.limits
    ttl = item.get("ttl", meta.get("_default_message_ttl") or limits.default_message_ttl)
    if not 60 <= ttl <= limits.max_message_ttl:
        raise errors.BadRequest(
            f"The TTL for a message may not exceed {limits.max_message_ttl} seconds, "
            "and must be at least 60 seconds long."
        )
    delay = 0
    queue_delay = meta.get("_default_message_delay")
    if queue_delay:  # NOTE: per-message delay only counts on delayed queues (upstream).
        delay = item.get("delay", queue_delay)
        if not 0 <= delay <= limits.max_message_delay:
            raise errors.BadRequest(
                f"The Delay TTL for a message may not exceed {limits.max_message_delay} seconds,"
                "and must be at least 0 seconds long."
            )
    return MessageDraft(item["body"], ttl, delay)


def _notification(draft: MessageDraft, queue: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The document subscribers get: the message as posted after defaults, without id (§6.8)."""
    document = {"body": draft.body, "ttl": draft.ttl, "queue_name": queue, "Message_Type": "Notification"}
    if meta.get("_default_message_delay"):
        document["delay"] = draft.delay
    return document


@operation("message_post", unavailable="Messages could not be enqueued.")
def message_post(ctx: Context, req: Request) -> Response:
    validation.client_id(req.client_id, ctx.limits)
    queue = req.params["queue_name"]
    meta = queue_metadata(ctx, req, queue)
    messages = req.params.get("messages")
    _check_post_size(ctx, req, meta, messages)
    req.raise_body_error()
    if "messages" not in req.params:
        raise errors.BadRequest(
            "No messages were found in the request body.",
            detail="Invalid request.",
            summary="No messages were found in the request body.",
        )
    if not isinstance(messages, list):
        raise errors.InvalidBody("Document type not supported.")
    if not messages:
        raise errors.BadRequest("No messages to enqueu.")
    drafts = [_draft(ctx, item, meta) for item in messages]
    ids = ctx.store.messages.post(req.project_id, queue, drafts, req.client_id)
    ctx.notifier.messages_posted(req.project_id, queue, [_notification(d, queue, meta) for d in drafts])
    base = f"/v2/queues/{queue}/messages"
    return Response(
        201,
        {"resources": [f"{base}/{mid}" for mid in ids]},
        {"Location": f"{base}?ids={','.join(ids)}"},
        data=ids,
    )


@operation("message_list", unavailable="Messages could not be listed.")
def message_list(ctx: Context, req: Request) -> Response:
    validation.client_id(req.client_id, ctx.limits)
    p, queue = req.params, req.params["queue_name"]
    given = validation.integer(p, "limit")
    limit = validation.limit(given, 10, ctx.limits.max_messages_per_page, text=validation.PAGE_LIMIT_MAY_NOT)
    marker = validation.string(p, "marker")
    echo = validation.boolean(p, "echo")
    include_claimed = validation.boolean(p, "include_claimed")
    include_delayed = validation.boolean(p, "include_delayed")
    if not include_delayed and not queue_metadata(ctx, req, queue).get("_default_message_delay"):
        include_delayed = True  # NOTE: nothing is delayed on such a queue; upstream reports it forced.
    found = ctx.store.messages.list(
        req.project_id, queue, marker=marker, limit=limit, echo=echo, client_id=req.client_id,
        include_claimed=include_claimed, include_delayed=include_delayed,
    )
    checksum = ctx.features.enable_checksum
    body = {"messages": [views.message(m, queue, with_checksum=checksum) for m in found], "links": []}
    if found:
        echoed = {"limit": given, "echo": p.get("echo"), "include_claimed": p.get("include_claimed"),
                  "include_delayed": include_delayed}
        body["links"] = views.next_link(f"/v2/queues/{queue}/messages", echoed, found[-1].id)
    return Response(200, body, data=found)


@operation("message_get", unavailable="Message could not be retrieved.")
def message_get(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    mid = validation.required_string(req.params, "message_id")
    m = ctx.store.messages.get(req.project_id, queue, mid)
    return Response(200, views.message(m, queue, with_checksum=ctx.features.enable_checksum), data=m)


@operation("message_get_many", unavailable="Message could not be retrieved.")
def message_get_many(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    ids = validation.string_list(req.params, "message_ids") or []
    maximum = ctx.limits.max_messages_per_page
    if not 1 <= len(ids) <= maximum:
        raise errors.BadRequest(validation.PAGE_LIMIT_MAY_NOT.format(max=maximum))
    found = ctx.store.messages.get_many(req.project_id, queue, ids)
    if not found:
        raise errors.NotFound(
            f"No messages with IDs: {ids!r} found in the queue {queue} for project {req.project_id}."
        )
    checksum = ctx.features.enable_checksum
    return Response(200, {"messages": [views.message(m, queue, with_checksum=checksum) for m in found]},
                    data=found)


@operation("message_delete", unavailable="Message could not be deleted.")
def message_delete(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    mid = validation.required_string(req.params, "message_id")
    claim_id = validation.string(req.params, "claim_id")
    ctx.store.messages.delete(req.project_id, queue, mid, claim_id=claim_id)
    return Response(204)


@operation("message_delete_many", unavailable="Messages could not be deleted.")
def message_delete_many(ctx: Context, req: Request) -> Response:
    p, queue, limits = req.params, req.params["queue_name"], ctx.limits
    ids = validation.string_list(p, "message_ids")
    pop = validation.integer(p, "pop")
    if ids is None and pop is None:
        raise errors.BadRequest(
            'The request should have either "ids" or "pop" parameter in the request, to be able to delete.'
        )
    if ids is not None and pop is not None:
        raise errors.BadRequest("pop and id params cannot be present together in the delete request.")
    if pop is not None:
        maximum = limits.max_messages_per_claim_or_pop
        if not 1 <= pop <= maximum:
            raise errors.BadRequest(_POP_TEXT.format(max=maximum))
        popped = ctx.store.messages.pop(req.project_id, queue, pop)
        checksum = ctx.features.enable_checksum
        return Response(200, {"messages": [views.popped(m, with_checksum=checksum) for m in popped]},
                        data=popped)
    assert ids is not None
    if not 1 <= len(ids) <= limits.max_messages_per_page:
        raise errors.BadRequest(_IDS_TEXT.format(max=limits.max_messages_per_page))
    claim_ids = None
    if limits.message_delete_with_claim_id:
        claim_ids = validation.string_list(p, "claim_ids")
        if not claim_ids:
            raise errors.BadRequest(
                'The request should have both "ids" and "claim_ids" parameter in the request '
                "when message_delete_with_claim_id is True."
            )
    try:
        ctx.store.messages.delete_many(req.project_id, queue, ids, claim_ids=claim_ids)
    except storage_errors.ClaimDoesNotExist as exc:
        # NOTE: a client error here, not a missing resource: nothing was deleted.
        raise errors.BadRequest(str(exc)) from exc
    return Response(204)
