"""Service-level operations: version discovery, home document, ping and health."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from zaqar.api import errors, home
from zaqar.api.context import Context
from zaqar.api.operations import operation
from zaqar.api.request import Request, Response
from zaqar.storage import errors as storage_errors
from zaqar.storage.base import DataDriver, MessageDraft

LOG = logging.getLogger(__name__)


@operation("get_versions", unavailable="Versions could not be listed.", queue=False)
def get_versions(ctx: Context, req: Request) -> Response:
    return Response(300, home.VERSIONS, data=home.VERSIONS)


@operation("get_home_doc", unavailable="Home document could not be read.", queue=False)
def get_home_doc(ctx: Context, req: Request) -> Response:
    doc = home.document(ctx.features.admin_mode)
    headers = {"Content-Type": "application/json-home", "Cache-Control": "max-age=86400"}
    return Response(200, doc, headers, data=doc)


@operation("ping_node", unavailable="Storage is unreachable.", queue=False)
def ping_node(ctx: Context, req: Request) -> Response:
    if not ctx.store.is_alive():
        raise errors.Unavailable("Storage is unreachable.")
    return Response(204)


def _timed(name: str, step: Callable[[], Any], report: dict[str, Any]) -> Any:
    """Run one self-check step; a failure is reported with a ref that is also logged."""
    start = time.perf_counter()
    ref = None
    result = None
    try:
        result = step()
    except Exception:  # the check reports any failure instead of failing itself
        ref = str(uuid.uuid4())
        LOG.exception("health check %s failed (ref %s)", name, ref)
    report[name] = {"succeeded": ref is None, "seconds": round(time.perf_counter() - start, 6), "ref": ref}
    return result


def _self_check(store: DataDriver) -> tuple[dict[str, Any], dict[str, int]]:
    """Exercise every core operation on a throw-away queue of a throw-away project."""
    project, queue, ops = f"zaqar-health-{uuid.uuid4().hex}", "health-check", {}
    drafts = [MessageDraft({"health": i}, 300) for i in range(100)]
    _timed("create_queue", lambda: store.queues.create(project, queue, {}), ops)
    ids = _timed("post_messages", lambda: store.messages.post(project, queue, drafts, None), ops) or []
    claim = _timed("claim_messages", lambda: store.claims.create(project, queue, ttl=60, grace=60,
                                                                  limit=10), ops)
    _timed("list_messages", lambda: store.messages.list(project, queue, include_claimed=True), ops)
    stats = store.queues.stats(project, queue)
    volume = {"free": stats.free, "claimed": stats.claimed, "total": stats.total}
    claimed = claim[1] if claim else []
    _timed("delete_messages",
           lambda: [store.messages.delete(project, queue, m.id, claim_id=m.claim_id) for m in claimed[:1]],
           ops)
    _timed("delete_claim", lambda: store.claims.delete(project, queue, claim[0]) if claim else None, ops)
    _timed("bulk_delete_messages", lambda: store.messages.delete_many(project, queue, ids[:20]), ops)
    _timed("delete_queue", lambda: store.queues.delete(project, queue), ops)
    return ops, volume


@operation("check_node_health", unavailable="Health status could not be read.", queue=False,
           policy="health:get", feature="admin_mode")
def check_node_health(ctx: Context, req: Request) -> Response:
    if ctx.control is None or ctx.pool_store is None:
        body = _store_health(ctx.store)
    else:
        # Pooled: the catalog, then every pool's own report (http-v2.md §7.2).
        body = {"catalog_reachable": ctx.control.is_alive()}
        try:
            pools = ctx.control.pools.all()
        except storage_errors.StorageError as exc:
            LOG.warning("health: the management store cannot list the pools: %s", exc)
            body = {"catalog_reachable": False}
            return Response(200, body, data=body)
        for pool in pools:
            try:
                store = ctx.pool_store(pool.name)
            except storage_errors.StorageError as exc:
                LOG.warning("health: pool %s cannot be opened: %s", pool.name, exc)
                body[pool.name] = {"storage_reachable": False}
                continue
            body[pool.name] = _store_health(store)
    return Response(200, body, data=body)


def _store_health(store: DataDriver) -> dict[str, Any]:
    reachable = store.is_alive()
    body: dict[str, Any] = {"storage_reachable": reachable}
    if reachable:
        ops, volume = _self_check(store)
        body["message_volume"] = volume
        body["operation_status"] = ops
    return body
