"""Pool operations: register, list, get, update, delete (http-v2.md §9; admin, pooling only).

Pools are global: no operation here reads the project. A pool is registered
only once its store answers (``storage.probe``), because new queues are
placed on it right away.

Deleting a pool that still holds queues is refused ([N], our decision; the
contract is silent): upstream drops the pool and leaves its queues mapped to
a store nobody serves any more. With ``force`` (HTTP ``?force=true``,
websocket body field ``force``) the pool is deleted and then the placement
of its queues is forgotten; their data stays in that store, untouched, and
the next request for such a queue places it anew. The delete runs first so
that a refusal (403, a flavor still uses the pool) changes nothing; should
forgetting fail after it, repeating the forced delete finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jsonschema

from zaqar import storage
from zaqar.api import errors, validation, views
from zaqar.api.context import Context
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors
from zaqar.storage import pooling
from zaqar.storage.control import ControlDriver, Pool

LOG = logging.getLogger(__name__)

FIELDS = ("uri", "weight", "flavor", "options")
# The upstream schemas (zaqar/common/api/schemas/pools.py); "format: uri" is not enforced upstream.
_PROPERTIES: dict[str, Any] = {
    "uri": {"type": "string", "maxLength": 255},
    "weight": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "flavor": {"type": "string", "maxLength": 255},
    "options": {"type": "object"},
}
_CREATE = jsonschema.Draft4Validator({
    "type": "object", "properties": _PROPERTIES, "required": ["uri", "weight"], "additionalProperties": False,
})
_PATCH = jsonschema.Draft4Validator({"type": "object", "properties": _PROPERTIES})
_NOTHING_TO_PATCH = "One of `uri`, `weight`, `flavor`, or `options` needs to be specified"
_STILL_HOLDS = ("Pool {name} still holds {count} queues; delete them first, or repeat the request "
                "with force=true to forget their placement.")


def control(ctx: Context) -> ControlDriver:
    """The management store; ``pool_admin`` guarantees pooling, so its absence is a wiring bug."""
    if ctx.control is None:
        raise RuntimeError("pooling is on but the Context has no management store")
    return ctx.control


def view(pool: Pool, *, detailed: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": pool.name, "uri": pool.uri, "weight": pool.weight,
                            "flavor": pool.flavor, "href": f"/v2/pools/{pool.name}"}
    if detailed:
        body["options"] = dict(pool.options)
    return body


def _given(params: Mapping[str, Any]) -> dict[str, Any]:
    """The pool fields the request carries; a websocket body also holds ``pool_name`` and others."""
    return {field: params[field] for field in FIELDS if field in params}


def _check_connects(uri: str) -> None:
    """Refuse a URI whose store does not answer, before anything is registered."""
    reason = storage.probe(uri)
    if reason is not None:
        LOG.warning("refusing pool uri %s: %s", uri, reason)
        raise errors.InvalidBody(f"cannot connect to {uri}")


def _known_name(name: str) -> str:
    """``name``, or PoolDoesNotExist (404) for one no store could hold: no such pool can exist."""
    if not validation.storable(name):
        raise storage_errors.PoolDoesNotExist(name)
    return name


@operation("pool_list", unavailable="Pools could not be listed.", queue=False,
           policy="pools:get_all", feature="pool_admin")
def pool_list(ctx: Context, req: Request) -> Response:
    p = req.params
    given = validation.integer(p, "limit")
    limit = validation.limit(given, 10, ctx.limits.max_pools_per_page, text=validation.PAGE_LIMIT_NO_GREATER)
    marker = validation.string(p, "marker")
    detailed = validation.boolean(p, "detailed")
    found = control(ctx).pools.list(marker=marker, limit=limit)
    pools = [view(pool, detailed=detailed) for pool in found]
    echo = {"limit": given, "detailed": p.get("detailed")}
    links = views.next_link("/v2/pools", echo, pools[-1]["name"]) if pools else []
    asked = {k: views.query_value(v) for k, v in {**echo, "marker": marker}.items() if v is not None}
    location = "/v2/pools" + (f"?{urlencode(asked)}" if asked else "")
    return Response(200, {"pools": pools, "links": links}, {"Content-Location": location}, data=found)


@operation("pool_create", unavailable="Pool could not be created.", queue=False,
           policy="pools:create", feature="pool_admin")
def pool_create(ctx: Context, req: Request) -> Response:
    """Register or overwrite a pool: 201 either way, as upstream."""
    name, fields = req.params["pool_name"], _given(req.params)
    validation.storable_strings([name], "pool_name")
    # HTTP reports body keys outside FIELDS; the schema refuses them (websocket bodies may hold any).
    unexpected = dict.fromkeys(req.params.get("unexpected_fields") or ())
    validation.document(_CREATE, {**fields, **unexpected})
    _check_connects(fields["uri"])
    control(ctx).pools.create(name, fields["uri"], fields["weight"], flavor=fields.get("flavor"),
                              options=fields.get("options") or {})
    return Response(201, None, {"Location": f"/v2/pools/{name}"})


@operation("pool_get", unavailable="Pool could not be retrieved.", queue=False,
           policy="pools:get", feature="pool_admin")
def pool_get(ctx: Context, req: Request) -> Response:
    detailed = validation.boolean(req.params, "detailed")
    pool = control(ctx).pools.get(_known_name(req.params["pool_name"]))
    return Response(200, view(pool, detailed=detailed), data=pool)


@operation("pool_update", unavailable="Pool could not be updated.", queue=False,
           policy="pools:update", feature="pool_admin")
def pool_update(ctx: Context, req: Request) -> Response:
    """Change some fields; a new ``uri`` is probed first, as on create."""
    fields = _given(req.params)
    if not fields:
        raise errors.InvalidBody(_NOTHING_TO_PATCH)
    validation.document(_PATCH, fields)
    if "uri" in fields:
        _check_connects(fields["uri"])
    pool = control(ctx).pools.update(_known_name(req.params["pool_name"]), **fields)
    return Response(200, view(pool), data=pool)


@operation("pool_delete", unavailable="Pool could not be deleted.", queue=False,
           policy="pools:delete", feature="pool_admin")
def pool_delete(ctx: Context, req: Request) -> Response:
    """204 also for an unknown pool; see the module docstring for pools that still hold queues."""
    name = req.params["pool_name"]
    if not validation.storable(name):
        return Response(204)  # no such pool can exist
    force = validation.boolean(req.params, "force")
    store = control(ctx)
    if not force:
        held = _held(ctx, store, name)
        if held:
            raise errors.Conflict(_STILL_HOLDS.format(name=name, count=held))
    store.pools.delete(name)  # PoolInUseByFlavor -> 403, before any placement is forgotten
    forgotten = store.catalog.forget_pool(name)
    if forgotten:
        LOG.warning("pool %s deleted by force; forgot the placement of %d queues", name, forgotten)
    return Response(204)


def _held(ctx: Context, store: ControlDriver, name: str) -> int:
    """Queues still on the pool; every placement counts while its store cannot be asked."""
    placed = store.catalog.count(name)
    if not placed or ctx.pool_store is None:
        return placed
    try:
        return pooling.held_queues(store, ctx.pool_store(name), name)
    except storage_errors.BackendUnavailable as exc:
        LOG.warning("pool %s cannot be asked which queues it holds: %s", name, exc)
        return placed
