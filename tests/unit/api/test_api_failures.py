"""Failures: a storage outage is a 503 with the operation's text, a bug is a 500, never a crash."""

from __future__ import annotations

import pytest

from zaqar.api import Api, Context, Request
from zaqar.api.operations import OPERATIONS
from zaqar.storage import errors as storage_errors
from zaqar.storage.base import DataDriver


class _Down:
    """Any controller call fails as a dead database would."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise storage_errors.BackendUnavailable("connection refused")

        return fail


class FaultyDriver(DataDriver):
    """A store whose backend is unreachable: proves the 503 mapping without a real outage."""

    @property
    def queues(self):
        return _Down()

    @property
    def messages(self):
        return _Down()

    @property
    def claims(self):
        return _Down()

    @property
    def subscriptions(self):
        return _Down()

    def is_alive(self) -> bool:
        return False

    def gc(self) -> int:
        raise storage_errors.BackendUnavailable("connection refused")

    def close(self) -> None:
        return None


H = {"project_id": "p", "client_id": "3381af92-2b9e-11e3-b191-71861300734c"}


@pytest.mark.parametrize("action, params, text", [
    ("queue_list", {}, "Queues could not be listed."),
    ("queue_create", {"queue_name": "q"}, "Queue could not be created."),
    ("message_post", {"queue_name": "q", "messages": [{"body": 1}]}, "Messages could not be enqueued."),
    ("message_list", {"queue_name": "q"}, "Messages could not be listed."),
    ("claim_create", {"queue_name": "q"}, "Claim could not be created."),
    ("message_delete", {"queue_name": "q", "message_id": "x"}, "Message could not be deleted."),
])
def test_outage_is_503_with_the_operations_text(action, params, text):
    result = Api(Context(store=FaultyDriver())).handle(Request(action, params=params, **H))
    assert result.status == 503
    assert result.body == {"title": "Service temporarily unavailable",
                           "description": f"{text} Please try again in a few seconds."}


def test_ping_reports_an_unreachable_store():
    assert Api(Context(store=FaultyDriver())).handle(Request("ping_node", **H)).status == 503


def test_unexpected_exception_is_500_and_logged(monkeypatch, api, caplog):
    def broken(ctx, req):
        raise KeyError("oops")

    monkeypatch.setitem(OPERATIONS, "queue_list", OPERATIONS["queue_list"].__class__(
        "queue_list", broken, "Queues could not be listed.", queue=False))
    result = Api(api.ctx).handle(Request("queue_list", **H))
    assert result.status == 500
    assert result.body["title"] == "Internal server error"
    assert "unexpected failure in queue_list" in caplog.text


def test_unknown_action_is_400(api):
    result = api.handle(Request("queue_explode", **H))
    assert (result.status, result.body["description"]) == (400, "queue_explode is not a valid action")
