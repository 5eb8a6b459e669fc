"""Subscription operations: create, get, list, update, confirm, delete (http-v2.md §6)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from zaqar.api import errors, validation, views
from zaqar.api.context import Context
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors

_DUPLICATE = "Such subscription already exists. Subscriptions are unique by project + queue + subscriber URI."
_RETRY_INTS = ("retries_with_no_delay", "minimum_delay_retries", "minimum_delay", "maximum_delay",
               "maximum_delay_retries")
_BACKOFF = ("linear", "arithmetic", "exponential", "geometric")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _subscriber(ctx: Context, value: Any) -> str:
    types = list(ctx.limits.subscriber_types)
    unsupported = errors.BadRequest(
        f"The subscriber type of subscription must be supported in the list {types}."
    )
    if not isinstance(value, str):
        raise unsupported
    validation.storable_strings([value], "subscriber")
    parts = urlsplit(value)
    if parts.scheme not in types:
        raise unsupported
    if parts.scheme == "mailto" and "@" not in parts.path:
        raise errors.BadRequest(f"The subscriber {value} is not a valid mailto address.")
    if parts.scheme != "mailto" and not parts.netloc:
        raise errors.BadRequest(f"The subscriber {value} has no host.")
    return value


def _ttl(ctx: Context, value: Any) -> int:
    if not _is_int(value):
        raise errors.BadRequest("TTL must be an integer.")
    if value < 60:
        raise errors.BadRequest("The TTL for a subscription must be at least 60 seconds long.")
    now = datetime.datetime.fromtimestamp(ctx.clock(), datetime.UTC)
    try:
        now + datetime.timedelta(seconds=value)
    except OverflowError:
        raise errors.BadRequest(
            "The TTL seconds for a subscription plus current time must be less than "
            "9999-12-31 23:59:59.999999."
        ) from None
    return int(value)


def _retry_policy(policy: Any) -> None:
    if not isinstance(policy, dict):
        raise errors.BadRequest("retry_policy must be a dict.")
    for key in _RETRY_INTS:
        if key in policy and not _is_int(policy[key]):
            raise errors.BadRequest(f"Retry policy: {key} must be a integer.")
    function = policy.get("retry_backoff_function", "linear")
    if not isinstance(function, str):
        raise errors.BadRequest("retry_backoff_function must be a string.")
    if function not in _BACKOFF:
        raise errors.BadRequest("invalid retry_backoff_function.")
    override = policy.get("ignore_subscription_override", False)
    if not isinstance(override, bool):
        raise errors.BadRequest("ignore_subscription_override must be a boolean.")
    low, high = policy.get("minimum_delay", 5), policy.get("maximum_delay", 30)
    if low > high:
        raise errors.BadRequest("minimum_delay must less than maximum_delay.")
    if high - low < 10:
        raise errors.BadRequest("invalid minimum_delay and maximum_delay.")


def _options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.BadRequest("Options must be a dict.")
    if "_retry_policy" in value:
        _retry_policy(value["_retry_policy"])
    return value


def _fields(ctx: Context, body: Mapping[str, Any]) -> dict[str, Any]:
    """The validated subset of subscriber, ttl and options present in ``body``."""
    fields: dict[str, Any] = {}
    if "subscriber" in body:
        fields["subscriber"] = _subscriber(ctx, body["subscriber"])
    if "ttl" in body:
        fields["ttl"] = _ttl(ctx, body["ttl"])
    if "options" in body:
        fields["options"] = _options(body["options"])
    return fields


@operation("subscription_create", unavailable="Subscription could not be created.")
def subscription_create(ctx: Context, req: Request) -> Response:
    queue, p = req.params["queue_name"], req.params
    bound = "subscriber" not in p and req.connection is not None
    if not bound and "subscriber" not in p:
        raise errors.BadRequest("Missing parameter subscriber in body.")
    fields = _fields(ctx, {**p, "subscriber": req.connection} if bound else p)
    ttl = fields.get("ttl", ctx.limits.default_subscription_ttl)
    location = {"Location": f"/v2/queues/{queue}/subscriptions"}
    store = ctx.store.subscriptions
    try:
        sid = store.create(req.project_id, queue, fields["subscriber"], ttl, fields.get("options", {}))
    except storage_errors.SubscriptionAlreadyExists as exc:
        if exc.confirmed:
            raise errors.Conflict(_DUPLICATE.replace(". ", ".", 1), headers=location) from exc
        ctx.notifier.subscription_created(req.project_id, queue, store.get(req.project_id, queue, exc.sid))
        return Response(201, {"subscription_id": exc.sid}, location, data=(exc.sid, False))
    ctx.store.queues.create(req.project_id, queue, {})  # lazy queue, as a message post would
    if bound:
        store.confirm(req.project_id, queue, sid, True)  # the connection subscribed itself
    else:
        ctx.notifier.subscription_created(req.project_id, queue, store.get(req.project_id, queue, sid))
    return Response(201, {"subscription_id": sid}, location, data=(sid, True))


@operation("subscription_get", unavailable="Subscription could not be retrieved.")
def subscription_get(ctx: Context, req: Request) -> Response:
    sid = validation.required_string(req.params, "subscription_id")
    s = ctx.store.subscriptions.get(req.project_id, req.params["queue_name"], sid)
    return Response(200, views.subscription(s), data=s)


@operation("subscription_list", unavailable="Subscriptions could not be listed.")
def subscription_list(ctx: Context, req: Request) -> Response:
    p, queue = req.params, req.params["queue_name"]
    given = validation.integer(p, "limit")
    limit = validation.limit(given, 10, ctx.limits.max_subscriptions_per_page,
                             text=validation.PAGE_LIMIT_MAY_NOT)
    marker = validation.string(p, "marker")
    found = ctx.store.subscriptions.list(req.project_id, queue, marker=marker, limit=limit)
    body: dict[str, Any] = {"subscriptions": [views.subscription(s) for s in found], "links": []}
    if found:
        body["links"] = views.next_link(f"/v2/queues/{queue}/subscriptions", {"limit": given}, found[-1].id)
    return Response(200, body, data=found)


@operation("subscription_update", unavailable="Subscription could not be updated.")
def subscription_update(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    sid = validation.required_string(req.params, "subscription_id")
    body = req.params.get("subscription")
    if body is None or body == {}:
        raise errors.BadRequest("No subscription to create.")
    if not isinstance(body, dict):
        raise errors.BadRequest("Subscriptions must be a dict.")
    fields = _fields(ctx, body)
    if not fields:
        raise errors.ApiError(f"Subscription {sid} could not be updated.",
                              title="Unable to update subscription", status=400)
    _carry_push_token(ctx, req.project_id, queue, sid, fields)
    try:
        ctx.store.subscriptions.update(req.project_id, queue, sid, **fields)
    except storage_errors.SubscriptionAlreadyExists as exc:
        raise errors.Conflict(_DUPLICATE) from exc
    return Response(204, headers={"Location": f"/v2/queues/{queue}/subscriptions/{sid}"})


def _carry_push_token(ctx: Context, project: str | None, queue: str, sid: str,
                      fields: dict[str, Any]) -> None:
    """Keep a connection-bound subscription's push token through an update that replaces its options.

    The client never sees the token (``views.subscription``), so options it sends
    back lack it; without it, pushes from other processes would be refused (403)
    and lost. A subscriber changed to another URL loses it: it is the connection's.
    """
    if "options" not in fields and "subscriber" not in fields:
        return
    try:
        current = ctx.store.subscriptions.get(project, queue, sid)
    except storage_errors.SubscriptionDoesNotExist:
        return  # the update itself says so
    headers = current.options.get("post_headers")
    token = headers.get(views.PUSH_TOKEN_HEADER) if isinstance(headers, dict) else None
    if token is None:
        return
    options = fields.get("options", current.options)
    given = options.get("post_headers")
    kept = {k: v for k, v in given.items() if k != views.PUSH_TOKEN_HEADER} if isinstance(given, dict) else {}
    if fields.get("subscriber", current.subscriber) == current.subscriber:
        kept[views.PUSH_TOKEN_HEADER] = token
    rest = {k: v for k, v in options.items() if k != "post_headers"}
    fields["options"] = {**rest, "post_headers": kept} if kept or isinstance(given, dict) else rest


@operation("subscription_confirm", unavailable="Subscription could not be confirmed.")
def subscription_confirm(ctx: Context, req: Request) -> Response:
    queue = req.params["queue_name"]
    sid = validation.required_string(req.params, "subscription_id")
    confirmed = req.params.get("confirmed")
    if not isinstance(confirmed, bool):
        raise errors.BadRequest("The 'confirmed' should be boolean.")
    store = ctx.store.subscriptions
    store.confirm(req.project_id, queue, sid, confirmed)
    ctx.notifier.subscription_confirmed(req.project_id, queue, store.get(req.project_id, queue, sid))
    return Response(204, headers={"Location": f"/v2/queues/{queue}/subscriptions/{sid}/confirm"})


@operation("subscription_delete", unavailable="Subscription could not be deleted.")
def subscription_delete(ctx: Context, req: Request) -> Response:
    sid = validation.required_string(req.params, "subscription_id")
    ctx.store.subscriptions.delete(req.project_id, req.params["queue_name"], sid)
    return Response(204, data=sid)
