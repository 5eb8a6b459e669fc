"""Queue operations: create, list, get, exists, update (JSON patch), delete, stats, purge."""

from __future__ import annotations

from typing import Any

from zaqar.api import errors, metadata, patch, validation, views
from zaqar.api.context import Context
from zaqar.api.handlers.common import encoded_size, queue_metadata
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors

_PURGE_TYPES = ("messages", "subscriptions")
_PURGE_BATCH = 100


def _check_metadata_size(ctx: Context, req: Request, value: object, cls: type[errors.ApiError]) -> None:
    if encoded_size(req, value) > ctx.limits.max_queue_metadata:
        raise cls(f"Queue metadata is too large. Max size: {ctx.limits.max_queue_metadata}")


@operation("queue_list", unavailable="Queues could not be listed.", queue=False)
def queue_list(ctx: Context, req: Request) -> Response:
    p = req.params
    given = validation.integer(p, "limit")
    limit = validation.limit(given, 10, ctx.limits.max_queues_per_page, text=validation.PAGE_LIMIT_NO_GREATER)
    marker = validation.string(p, "marker")
    detailed = validation.boolean(p, "detailed")
    with_count = validation.boolean(p, "with_count")
    name = validation.string(p, "name")
    filters = p.get("filters") or None
    infos = ctx.store.queues.list(req.project_id, marker=marker, limit=limit, name=name, filters=filters)
    queues = []
    for info in infos:
        item = {"name": info.name, "href": f"/v2/queues/{info.name}"}
        if detailed:
            item["metadata"] = metadata.with_defaults(info.metadata, ctx.limits)
        queues.append(item)
    links = []
    if queues:
        echo = {"limit": given, "detailed": p.get("detailed"), "name": name,
                "with_count": p.get("with_count")}
        links = views.next_link("/v2/queues", echo, queues[-1]["name"])
    body = {"queues": queues, "links": links}
    if with_count:
        count = ctx.store.queues.count(req.project_id)
        if count:
            body["count"] = count
    return Response(200, body, data=infos)


@operation("queue_create", unavailable="Queue could not be created.")
def queue_create(ctx: Context, req: Request) -> Response:
    name = req.params["queue_name"]
    meta = req.params.get("metadata")
    meta = {} if meta is None else meta
    _check_metadata_size(ctx, req, meta, errors.BadRequest)
    req.raise_body_error()
    if not isinstance(meta, dict):
        raise errors.InvalidBody("Document type not supported.")
    metadata.validate(meta, ctx.limits, errors.BadRequest)
    _check_flavor(ctx, req, meta)
    created = ctx.store.queues.create(req.project_id, name, meta)
    return Response(201 if created else 204, None, {"Location": f"/v2/queues/{name}"}, data=created)


def _check_flavor(ctx: Context, req: Request, meta: dict[str, Any]) -> None:
    """With pooling, ``_flavor`` places the new queue on a flavor's pools, so it must name one."""
    flavor = meta.get("_flavor")
    if ctx.control is None or flavor is None:
        return
    if not isinstance(flavor, str):
        raise errors.BadRequest("_flavor must be a string.")
    if not validation.storable(flavor):  # no flavor of such a name can exist
        raise errors.BadRequest(f"Flavor {flavor} does not exist.")
    try:
        ctx.control.flavors.get(req.project_id, flavor)
    except storage_errors.FlavorDoesNotExist:
        raise errors.BadRequest(f"Flavor {flavor} does not exist.") from None


@operation("queue_get", unavailable="Queue metadata could not be retrieved.")
def queue_get(ctx: Context, req: Request) -> Response:
    meta = queue_metadata(ctx, req, req.params["queue_name"])
    return Response(200, metadata.with_defaults(meta, ctx.limits), data=meta)


@operation("queue_exists", unavailable="Queue metadata could not be retrieved.")
def queue_exists(ctx: Context, req: Request) -> Response:
    found = ctx.store.queues.exists(req.project_id, req.params["queue_name"])
    return Response(204 if found else 404, data=found)


@operation("queue_update", unavailable="Queue could not be updated.")
def queue_update(ctx: Context, req: Request) -> Response:
    name = req.params["queue_name"]
    document = req.params.get("patch")
    _check_metadata_size(ctx, req, document, errors.InvalidBody)
    req.raise_body_error()
    if document is None:
        raise errors.InvalidBody("PATCH body could not be empty for update.")
    ops = patch.parse(document)

    def change(current: dict[str, Any]) -> dict[str, Any]:
        updated = patch.apply(ops, current, metadata.RESERVED)
        metadata.validate(updated, ctx.limits, errors.InvalidBody)
        return updated

    # One atomic read-modify-write: concurrent PATCHes of one queue must not lose updates.
    updated = ctx.store.queues.update_metadata(req.project_id, name, change)
    return Response(200, metadata.with_defaults(updated, ctx.limits), data=updated)


@operation("queue_delete", unavailable="Queue could not be deleted.")
def queue_delete(ctx: Context, req: Request) -> Response:
    ctx.store.queues.delete(req.project_id, req.params["queue_name"])
    return Response(204)


@operation("queue_get_stats", unavailable="Queue stats could not be read.")
def queue_get_stats(ctx: Context, req: Request) -> Response:
    name = req.params["queue_name"]
    s = ctx.store.queues.stats(req.project_id, name)
    # An empty queue may not exist at all; only then, and only if the store did not say, ask.
    exists = s.exists
    if exists is None:
        exists = bool(s.total) or ctx.store.queues.exists(req.project_id, name)
    now = ctx.clock()
    body = views.stats(s, now, lambda stamp: {"href": f"/v2/queues/{name}/messages/{stamp.id}"})
    return Response(200, body, data=(s, exists, now))


@operation("queue_purge", unavailable="Queue could not be purged.")
def queue_purge(ctx: Context, req: Request) -> Response:
    name = req.params["queue_name"]
    types = req.params.get("resource_types", list(_PURGE_TYPES))
    if types is None:
        raise errors.BadRequest('Post body must contain key "resource_types".')
    if not isinstance(types, list) or not all(t in _PURGE_TYPES for t in types):  # NOTE: [[]] is unhashable
        raise errors.BadRequest("Resource types must be a sub set of {'messages', 'subscriptions'}.")
    if "messages" in types:
        # NOTE: purge pops, so messages under a live claim survive it (upstream).
        while ctx.store.messages.pop(req.project_id, name, _PURGE_BATCH):
            pass
    if "subscriptions" in types:
        ctx.store.subscriptions.delete_all(req.project_id, name)
    return Response(204)
