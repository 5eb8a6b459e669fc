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


# -- PostgreSQL: a value it refuses is no outage, and an outage is still one (review 8 #5) ----------
CID = "3381af92-2b9e-11e3-b191-71861300734c"


@pytest.fixture
def sql_store():
    from tests import backends
    from zaqar import storage

    with backends.sql_uri() as uri:
        store = storage.load_data_driver("sqlalchemy", uri)
        yield store
        store.close()


@pytest.mark.parametrize("value", ["a\x00", "\ud800"], ids=["nul", "surrogate"])
def test_a_value_postgresql_cannot_hold_is_refused_at_once_as_no_outage(sql_store, value):
    """Past the API's validation (a bug there), the store says the value was refused: not "try again"."""
    from zaqar.storage.sql.database import DataRefused

    with pytest.raises(DataRefused) as refused:
        sql_store.queues.list("p", marker=value)
    assert not isinstance(refused.value, storage_errors.StorageError)
    assert str(refused.value).startswith("The database refused a value: ")
    assert "SELECT" not in str(refused.value)  # the statement stays out of the answer
    assert sql_store.queues.list("p") == []  # and the connection is fine


def test_through_the_api_such_values_are_a_400_with_no_warning_logged(sql_store, caplog):
    """Project ids are checked by ``validation.project_id``, which both transports call (test_isolation)."""
    api = Api(Context(store=sql_store))
    cases = [Request("queue_list", project_id="p", client_id=CID, params={"marker": "\x00"}),
             Request("queue_list", project_id="p", client_id=CID, params={"name": "a\x00"}),
             Request("subscription_list", project_id="p", params={"queue_name": "q", "marker": "\ud800"}),
             Request("message_list", project_id="p", client_id=CID,
                     params={"queue_name": "q", "marker": "\x00"})]
    for request in cases:
        with caplog.at_level("WARNING"):
            assert api.handle(request).status == 400, request
    assert [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []


def test_an_unreachable_postgresql_is_still_an_outage(caplog):
    from zaqar import storage

    store = storage.load_data_driver("sqlalchemy", "postgresql://postgres@127.0.0.1:1/zaqar_test")
    try:
        result = Api(Context(store=store)).handle(Request("queue_list", project_id="p", client_id=CID))
    finally:
        store.close()
    assert result.status == 503
    assert result.body == {"title": "Service temporarily unavailable",
                           "description": "Queues could not be listed. Please try again in a few seconds."}
    assert "queue_list failed: The storage backend is unavailable" in caplog.text
