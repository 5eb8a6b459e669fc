"""The json-home document of /v2/ (http-v2.md §2), built once per feature set."""

from __future__ import annotations

from typing import Any

_JSON = {"application/json": {}}


def _res(template: str, hvars: dict[str, str], allow: list[str], post: bool = False) -> dict[str, Any]:
    hints: dict[str, Any] = {"allow": allow, "formats": _JSON}
    if post:
        hints["accept-post"] = ["application/json"]
    res: dict[str, Any] = {"href-template": template}
    if hvars:
        res["href-vars"] = hvars
    res["hints"] = hints
    return res


_Q = {"queue_name": "param/queue_name"}
_QC = {"queue_name": "param/queue_name", "claim_id": "param/claim_id"}
_QS = {"queue_name": "param/queue_name", "subscriptions_id": "param/subscriptions_id"}
_QM = {"queue_name": "param/queue_name", "message_id": "param/message_id"}


def document(admin_mode: bool) -> dict[str, Any]:
    r: dict[str, Any] = {
        "rel/queues": _res("/v2/queues{?marker,limit,detailed}", {
            "marker": "param/marker", "limit": "param/queue_limit", "detailed": "param/detailed"}, ["GET"]),
        "rel/queue": _res("/v2/queues/{queue_name}", _Q, ["GET", "PUT", "DELETE", "PATCH"]),
        "rel/queue_stats": _res("/v2/queues/{queue_name}/stats", _Q, ["GET"]),
        "rel/queue_share": _res("/v2/queues/{queue_name}/share", _Q, ["POST"], True),
        "rel/queue_purge": _res("/v2/queues/{queue_name}/purge", _Q, ["POST"], True),
        "rel/messages": _res("/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}", {
            "queue_name": "param/queue_name", "marker": "param/marker", "limit": "param/messages_limit",
            "echo": "param/echo", "include_claimed": "param/include_claimed"}, ["GET"]),
        "rel/post_messages": _res("/v2/queues/{queue_name}/messages", _Q, ["POST"], True),
        "rel/messages_delete": _res("/v2/queues/{queue_name}/messages{?ids,pop}", {
            "queue_name": "param/queue_name", "ids": "param/ids", "pop": "param/pop"}, ["DELETE"]),
        # NOTE: advertises {?claim} as upstream does, though the server reads claim_id.
        "rel/message_delete": _res("/v2/queues/{queue_name}/messages/{message_id}{?claim}",
                                   {**_QM, "claim": "param/claim_id"}, ["DELETE"]),
        "rel/message_get": _res("/v2/queues/{queue_name}/messages/{message_id}", _QM, ["GET"]),
        "rel/claim": _res("/v2/queues/{queue_name}/claims/{claim_id}", _QC, ["GET"]),
        "rel/post_claim": _res("/v2/queues/{queue_name}/claims{?limit}", {
            "queue_name": "param/queue_name", "limit": "param/claim_limit"}, ["POST"], True),
        "rel/patch_claim": _res("/v2/queues/{queue_name}/claims/{claim_id}", _QC, ["PATCH"], True),
        "rel/delete_claim": _res("/v2/queues/{queue_name}/claims/{claim_id}", _QC, ["DELETE"]),
        "rel/subscriptions_get": _res("/v2/queues/{queue_name}/subscriptions{?marker,limit}", {
            "queue_name": "param/queue_name", "marker": "param/marker",
            "limit": "param/subscription_limit"}, ["GET"]),
        "rel/subscriptions_post": _res("/v2/queues/{queue_name}/subscriptions", {
            "queue_name": "param/queue_name", "limit": "param/subscription_limit"}, ["POST"], True),
        "rel/subscription": _res("/v2/queues/{queue_name}/subscriptions/{subscriptions_id}", _QS,
                                 ["GET", "DELETE"]),
        "rel/subscription_patch": _res("/v2/queues/{queue_name}/subscriptions/{subscriptions_id}", _QS,
                                       ["PATCH"], True),
        "rel/ping": _res("/v2/ping", {}, ["GET"]),
    }
    if admin_mode:
        r["rel/pools"] = _res("/v2/pools{?detailed,limit,marker}", {
            "detailed": "param/detailed", "limit": "param/pool_limit", "marker": "param/marker"}, ["GET"])
        r["rel/pool"] = _res("/v2/pools/{pool_name}", {"pool_name": "param/pool_name"},
                             ["GET", "PUT", "PATCH", "DELETE"])
        r["rel/flavors"] = _res("/v2/flavors{?detailed,limit,marker}", {
            "detailed": "param/detailed", "limit": "param/flavor_limit", "marker": "param/marker"}, ["GET"])
        r["rel/flavor"] = _res("/v2/flavors/{flavor_name}", {"flavor_name": "param/flavor_name"},
                               ["GET", "PUT", "PATCH", "DELETE"])
        r["rel/health"] = {"href": "/v2/health", "hints": {"allow": ["GET"], "formats": _JSON}}
    return {"resources": r}


VERSIONS = {
    "versions": [
        {
            "id": "2",
            "status": "CURRENT",
            "updated": "2014-9-24T04:06:47Z",
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.messaging-v2+json"}
            ],
            "links": [{"href": "/v2/", "rel": "self"}],
        }
    ]
}
