"""Flavor operations: create, list, get, update, delete (http-v2.md §10; pooling only).

Flavors are per project (``req.project_id``); the pools they group are
global. Capabilities are not stored from the request: they are what the
driver of the flavor's first pool (by name) guarantees, read when reported,
so they follow the pools.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jsonschema

from zaqar import storage
from zaqar.api import errors, validation, views
from zaqar.api.context import Context
from zaqar.api.handlers.pools import control
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors
from zaqar.storage.control import Flavor

_POOL_LIST = {"type": "array", "items": {"type": "string"}}
_CREATE = jsonschema.Draft4Validator({
    "type": "object",
    "properties": {"pool_list": _POOL_LIST, "capabilities": {"type": "object"}},
    "required": ["pool_list"],
})
_PATCH = jsonschema.Draft4Validator({"type": "object", "properties": {"pool_list": _POOL_LIST}})


def _fields(req: Request) -> dict[str, Any]:
    return {k: req.params[k] for k in ("pool_list", "capabilities") if k in req.params}


def _capabilities(ctx: Context, pools: Sequence[str]) -> list[str]:
    """Capability names of the first pool's driver; ``[]`` for a flavor without pools."""
    if not pools:
        return []
    uri = control(ctx).pools.get(pools[0]).uri
    return sorted(c.value for c in storage.driver_class(uri).capabilities)


def _not_empty(pool_list: list[str]) -> None:
    if not pool_list:
        raise errors.ApiError("Bad Request", title="Unable to create", status=400)


def _unknown_pool(exc: storage_errors.PoolDoesNotExist, *, title: str, failure: str) -> errors.ApiError:
    """An unknown listed pool is the contract's 400 here, not the 404 a missing pool is elsewhere.

    The management store has then changed nothing.
    """
    return errors.ApiError(f"{failure}, error:{exc}", title=title, status=400)


def _entry(flavor: Flavor, capabilities: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": flavor.name, "href": f"/v2/flavors/{flavor.name}"}
    if flavor.pools:
        body["pool_list"] = list(flavor.pools)
    if capabilities is not None:
        body["capabilities"] = capabilities
    return body


def _known_name(req: Request, name: str) -> str:
    """``name``, or FlavorDoesNotExist (404) for one no store could hold: no such flavor can exist."""
    if not validation.storable(name):
        raise storage_errors.FlavorDoesNotExist(name, req.project_id)
    return name


@operation("flavor_list", unavailable="Flavors could not be listed.", queue=False,
           policy="flavors:get_all", feature="pool_admin")
def flavor_list(ctx: Context, req: Request) -> Response:
    p = req.params
    given = validation.integer(p, "limit")
    limit = validation.limit(given, 10, ctx.limits.max_flavors_per_page,
                             text=validation.PAGE_LIMIT_NO_GREATER)
    marker = validation.string(p, "marker")
    detailed = validation.boolean(p, "detailed")
    found = control(ctx).flavors.list(req.project_id, marker=marker, limit=limit)
    flavors = [_entry(f, _capabilities(ctx, f.pools) if detailed else None) for f in found]
    links = []
    if flavors:
        links = views.next_link("/v2/flavors", {"limit": given, "detailed": p.get("detailed")},
                                flavors[-1]["name"])
    return Response(200, {"flavors": flavors, "links": links}, data=found)


@operation("flavor_create", unavailable="Flavor could not be created.", queue=False,
           policy="flavors:create", feature="pool_admin")
def flavor_create(ctx: Context, req: Request) -> Response:
    """Create or overwrite: 201 either way. Given ``capabilities`` are checked but not kept."""
    name, fields = req.params["flavor_name"], _fields(req)
    validation.storable_strings([name], "flavor_name")
    validation.document(_CREATE, fields)
    _not_empty(fields["pool_list"])
    try:
        control(ctx).flavors.create(req.project_id, name, fields["pool_list"])
    except storage_errors.PoolDoesNotExist as exc:
        raise _unknown_pool(exc, title="Unable to create", failure=f"Flavor {name} could not be created") \
            from exc
    return Response(201, None, {"Location": f"/v2/flavors/{name}"})


@operation("flavor_get", unavailable="Flavor could not be retrieved.", queue=False,
           policy="flavors:get", feature="pool_admin")
def flavor_get(ctx: Context, req: Request) -> Response:
    flavor = control(ctx).flavors.get(req.project_id, _known_name(req, req.params["flavor_name"]))
    body = {"name": flavor.name, "pool_list": list(flavor.pools),
            "capabilities": _capabilities(ctx, flavor.pools), "href": f"/v2/flavors/{flavor.name}"}
    return Response(200, body, data=flavor)


@operation("flavor_update", unavailable="Flavor could not be updated.", queue=False,
           policy="flavors:update", feature="pool_admin")
def flavor_update(ctx: Context, req: Request) -> Response:
    """Replace the pool list; checks run in upstream's order: empty, flavor missing, pool missing."""
    name, fields = req.params["flavor_name"], _fields(req)
    if "pool_list" not in fields:
        raise errors.InvalidBody("`pool_list` needs to be specified")
    validation.document(_PATCH, fields)
    _not_empty(fields["pool_list"])
    store = control(ctx)
    store.flavors.get(req.project_id, _known_name(req, name))  # FlavorDoesNotExist -> 404
    try:
        flavor = store.flavors.update(req.project_id, name, fields["pool_list"])
    except storage_errors.PoolDoesNotExist as exc:
        raise _unknown_pool(exc, title="updatefail", failure=f"Flavor {name} cant be updated") from exc
    body = {"name": flavor.name, "capabilities": _capabilities(ctx, flavor.pools),
            "pool_list": list(flavor.pools), "href": f"/v2/flavors/{flavor.name}"}
    return Response(200, body, data=flavor)


@operation("flavor_delete", unavailable="Flavor could not be deleted.", queue=False,
           policy="flavors:delete", feature="pool_admin")
def flavor_delete(ctx: Context, req: Request) -> Response:
    """204 always, also for an unknown flavor; the store clears ``flavor`` on its pools."""
    name = req.params["flavor_name"]
    if validation.storable(name):  # no flavor of any other name can exist
        control(ctx).flavors.delete(req.project_id, name)
    return Response(204)
