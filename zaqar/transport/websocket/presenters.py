"""Websocket representations where the contract differs from HTTP (websocket.md §6.2, §12).

Every function takes the shared ``Response`` and the request parameters and
only reshapes what the API layer already computed; none calls storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zaqar.api import ApiError, Response, views
from zaqar.storage.base import Message

Presenter = Callable[[Response, Mapping[str, Any]], tuple[int, Any]]


def message(m: Message) -> dict[str, Any]:
    return {"id": m.id, "claim_id": m.claim_id, "ttl": m.ttl, "age": m.age, "body": m.body}


def error_body(exc: ApiError) -> dict[str, Any]:
    return {"exception": exc.detail or exc.title, "error": exc.summary}


def _queue_list(r: Response, p: Mapping[str, Any]) -> tuple[int, Any]:
    detailed = p.get("detailed") is True
    return 200, {"queues": [{"name": q.name, **({"metadata": q.metadata} if detailed else {})}
                            for q in r.data]}


def _stats(r: Response, p: Mapping[str, Any]) -> tuple[int, Any]:
    s, exists, now = r.data
    return (200 if exists else 404), views.stats(s, now, lambda stamp: {"id": stamp.id})


def _claim_create(r: Response, p: Mapping[str, Any]) -> tuple[int, Any]:
    claim_id, claimed = r.data
    if claim_id is None:
        return 204, {"claim_id": None}
    return 201, {"claim_id": claim_id, "messages": [message(m) for m in claimed]}


def _delete_many(r: Response, p: Mapping[str, Any]) -> tuple[int, Any]:
    return r.status, (r.body if r.status == 200 else {})


def _text(template: str) -> Presenter:
    return lambda r, p: (r.status, template.format(**p))


PRESENTERS: dict[str, Presenter] = {
    "queue_list": _queue_list,
    "queue_create": _text("Queue {queue_name} created."),
    "queue_get": lambda r, p: (200, r.data),
    "queue_delete": _text("Queue {queue_name} removed."),
    "queue_get_stats": _stats,
    "message_list": lambda r, p: (200, {"messages": [message(m) for m in r.data]}),
    "message_get": lambda r, p: (200, {"messages": message(r.data)}),
    "message_get_many": lambda r, p: (200, {"messages": [message(m) for m in r.data]}),
    "message_post": lambda r, p: (201, {"message_ids": r.data}),
    "message_delete_many": _delete_many,
    "claim_create": _claim_create,
    "claim_get": lambda r, p: (200, {"age": r.data.age, "ttl": r.data.ttl,
                                     "messages": [message(m) for m in r.data.messages]}),
    "subscription_create": lambda r, p: (
        (201, {"subscription_id": r.data[0], "message": f"Subscription {p['queue_name']} created."})
        if r.data[1] else (409, f"Subscription {p['queue_name']} not created.")),
    "subscription_list": lambda r, p: (200, {"subscriptions": r.body["subscriptions"]}),
    "subscription_delete": _text("Subscription {subscription_id} removed."),
    "claim_update": _text("Claim {claim_id} updated."),
    "claim_delete": _text("Claim {claim_id} deleted."),
}

# Errors the websocket reports differently from HTTP: get-many finding nothing is an empty page.
ERROR_PRESENTERS: dict[tuple[str, int], Presenter] = {
    ("message_get_many", 404): lambda r, p: (200, {"messages": []}),
    # [U] any duplicate is a conflict here, confirmed or not
    ("subscription_create", 409): lambda r, p: (409, f"Subscription {p['queue_name']} not created."),
}


def present(action: str, response: Response, params: Mapping[str, Any]) -> tuple[int, Any]:
    """The websocket (status, body) of an API response."""
    if isinstance(response.data, ApiError):
        special = ERROR_PRESENTERS.get((action, response.status))
        if special is not None:
            return special(response, params)
        return response.status, error_body(response.data)
    presenter = PRESENTERS.get(action)
    if presenter is not None:
        return presenter(response, params)
    return response.status, ({} if response.body is None else response.body)
