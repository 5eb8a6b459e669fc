"""Notifications end to end: real zaqar-server processes delivering to real local endpoints.

Webhooks go to ``tests.receivers.HttpReceiver`` / ``Blackhole``, mail to
``SmtpSink``, pushes to websocket-client connections. Messages are posted
over HTTP with ``requests`` (keep-alive). Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
import websocket

from tests import backends
from tests.receivers import Blackhole, HttpReceiver, SmtpSink
from tests.server import ServerProcess, running_server
from zaqar.notification.confirmation import signature

pytestmark = pytest.mark.slow

SECRET = "notification-test-secret"


def _project() -> str:
    return f"notify-{uuid.uuid4().hex[:12]}"


def _http(project: str) -> requests.Session:
    session = requests.Session()
    session.headers.update({"Client-ID": str(uuid.uuid4()), "X-Project-ID": project})
    return session


def _post(http: requests.Session, server: ServerProcess, queue: str, *bodies: Any, ttl: int = 300) -> None:
    reply = http.post(f"{server.url}/v2/queues/{queue}/messages", timeout=10,
                      json={"messages": [{"body": body, "ttl": ttl} for body in bodies]})
    assert reply.status_code == 201, reply.text


def _subscribe(http: requests.Session, server: ServerProcess, queue: str, subscriber: str,
               options: dict[str, Any] | None = None) -> str:
    reply = http.post(f"{server.url}/v2/queues/{queue}/subscriptions", timeout=10,
                      json={"subscriber": subscriber, "ttl": 3600, "options": options or {}})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["subscription_id"])


def _subscriptions(http: requests.Session, server: ServerProcess, queue: str) -> list[dict[str, Any]]:
    reply = http.get(f"{server.url}/v2/queues/{queue}/subscriptions", timeout=10)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["subscriptions"])


def _subscription(http: requests.Session, server: ServerProcess, queue: str, sid: str) -> dict[str, Any]:
    reply = http.get(f"{server.url}/v2/queues/{queue}/subscriptions/{sid}", timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _notification(body: Any, queue: str, ttl: int = 300) -> dict[str, Any]:
    return {"body": body, "ttl": ttl, "queue_name": queue, "Message_Type": "Notification"}


def _ws_call(conn: websocket.WebSocket, action: str, body: dict[str, Any], project: str,
             binary: bool) -> dict[str, Any]:
    document = {"action": action, "headers": {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project},
                "body": body}
    if binary:
        conn.send_binary(msgpack.packb(document, use_bin_type=True))
    else:
        conn.send(json.dumps(document))
    return _ws_frame(conn, binary)


def _ws_frame(conn: websocket.WebSocket, binary: bool) -> dict[str, Any]:
    """The next frame, which must be in the expected encoding (within the connection's timeout)."""
    opcode, data = conn.recv_data()
    if binary:
        assert opcode == websocket.ABNF.OPCODE_BINARY, (opcode, data)
        return dict(msgpack.unpackb(data, raw=False))
    assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, data)
    return dict(json.loads(data))


def _ws_subscribe(server: ServerProcess, queue: str, project: str, binary: bool) -> websocket.WebSocket:
    conn = websocket.create_connection(server.ws_url, timeout=10)
    reply = _ws_call(conn, "subscription_create", {"queue_name": queue, "ttl": 600}, project, binary)
    assert reply["headers"]["status"] == 201, reply
    return conn


def _wait_until(check: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("notify-server")) as srv:
        yield srv


# -- webhooks -------------------------------------------------------------------------------------

def test_webhook_receives_every_message_of_the_queue(server):
    project, queue = _project(), "hooked"
    http = _http(project)
    with HttpReceiver() as hook:
        _subscribe(http, server, queue, hook.url + "/hook", {"post_headers": {"X-Hook-Token": "t0k3n"}})
        _subscribe(http, server, "not-this-one", hook.url + "/other")
        bodies = [{"n": n, "event": "disk full"} for n in range(10)]
        for body in bodies[:4]:
            _post(http, server, queue, body)
        _post(http, server, queue, *bodies[4:], ttl=300)  # one request, six messages
        posts = hook.wait_for(10, path="/hook")
        documents = sorted((p.json() for p in posts), key=lambda d: d["body"]["n"])
        assert documents == [_notification(body, queue) for body in bodies]  # no id, no href
        assert all(p.headers["Content-Type"] == "application/json" for p in posts)
        assert all(p.headers["X-Hook-Token"] == "t0k3n" for p in posts)
        hook.assert_quiet(10)  # nothing repeated, nothing from the other queue


def test_webhook_answering_500_is_retried_until_it_accepts(server):
    project, queue = _project(), "flaky-hook"
    http = _http(project)
    with HttpReceiver(statuses=[500, 500]) as hook:
        _subscribe(http, server, queue, hook.url)
        _post(http, server, queue, {"order": 66})
        (delivered,) = hook.wait_for(1)
        assert delivered.json() == _notification({"order": 66}, queue)
        attempts = hook.received(delivered_only=False)
        assert [p.status for p in attempts] == [500, 500, 200]
        assert {p.body for p in attempts} == {delivered.body}
        hook.assert_quiet(3)  # exactly 3 attempts: none after the 200


def _post_rate(http: requests.Session, server: ServerProcess, queue: str, count: int) -> float:
    url = f"{server.url}/v2/queues/{queue}/messages"
    started = time.perf_counter()
    for n in range(count):
        reply = http.post(url, json={"messages": [{"body": {"n": n}, "ttl": 300}]}, timeout=10)
        assert reply.status_code == 201, reply.text
    return count / (time.perf_counter() - started)


def test_a_webhook_that_never_answers_does_not_slow_posting_or_other_subscribers(tmp_path):
    options = {"notification": {"webhook_timeout": "60"}}  # the blackhole holds deliveries for the whole test
    project, queue = _project(), "with-a-dead-hook"
    http = _http(project)
    with running_server(tmp_path, options=options) as srv, Blackhole() as hole, HttpReceiver() as healthy:
        _post_rate(http, srv, queue, 20)  # warm-up: connection, queue, sqlite file
        without = _post_rate(http, srv, queue, 200)
        _subscribe(http, srv, queue, hole.url + "/never")
        with_blackhole = _post_rate(http, srv, queue, 200)
        hole.wait_for_requests(1)
        rates = f"{without:.0f} posts/s alone, {with_blackhole:.0f} with a blackhole subscriber"
        assert with_blackhole / without >= 0.5, rates

        _subscribe(http, srv, queue, healthy.url + "/alive")
        _post(http, srv, queue, *({"after": n} for n in range(5)))
        posts = healthy.wait_for(5, timeout=10)
        assert sorted(p.json()["body"]["after"] for p in posts) == list(range(5))
        # the blackhole still hangs: its connections are open, nothing was answered
        assert 1 <= hole.open_connections <= 2 and hole.accepted <= 2
        healthy.assert_quiet(5, settle=0.2)


# -- websocket subscribers ------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["json-text", "msgpack-binary"])
def test_websocket_subscriber_gets_a_frame_per_message_posted_over_http(server, binary):
    project, queue = _project(), f"pushed-{'bin' if binary else 'text'}"
    http = _http(project)
    conn = _ws_subscribe(server, queue, project, binary)
    try:
        (sub,) = _subscriptions(http, server, queue)  # an ordinary subscription, visible over HTTP
        assert sub["subscriber"].startswith("http://127.0.0.1:")
        bodies = [{"n": n, "text": "grüße"} for n in range(3)]
        _post(http, server, queue, *bodies)
        frames = [_ws_frame(conn, binary) for _ in bodies]  # bare documents, in the subscription's encoding
        assert sorted(frames, key=lambda d: d["body"]["n"]) == [_notification(b, queue) for b in bodies]
    finally:
        conn.close()
    _wait_until(lambda: _subscriptions(http, server, queue) == [], what="connection's subscription deleted")
    _post(http, server, queue, "nobody listens")  # and posting still works


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_subscribers_of_queues_on_every_pool_of_a_pooled_server_are_notified(tmp_path, binary):
    project = _project()
    http = _http(project)
    with contextlib.ExitStack() as stack:
        options = stack.enter_context(_pooled_options(backends.redis_uri(), backends.sql_uri()))
        server = stack.enter_context(running_server(tmp_path, options=options))
        hook = stack.enter_context(HttpReceiver())
        catalog = _catalog(options)
        stack.callback(catalog.close)
        queues = [f"pooled-{n}" for n in range(8)]
        for number in range(2):  # a flavor per pool, so half the queues land on each
            catalog.flavors.create(project, f"on-{number}", [f"pool-{number}"])
        for n, queue in enumerate(queues):
            created = http.put(f"{server.url}/v2/queues/{queue}", json={"_flavor": f"on-{n % 2}"}, timeout=10)
            assert created.status_code == 201, created.text
        conns = {queue: _ws_subscribe(server, queue, project, binary) for queue in queues}
        for conn in conns.values():
            stack.callback(conn.close)
        for queue in queues:
            _subscribe(http, server, queue, f"{hook.url}/{queue}")
            _post(http, server, queue, {"queue": queue})
        for queue, conn in conns.items():
            assert _ws_frame(conn, binary) == _notification({"queue": queue}, queue)
        posts = hook.wait_for(len(queues))
        assert sorted(post.path for post in posts) == sorted(f"/{q}" for q in queues)
        hook.assert_quiet(len(queues))
        assert [catalog.catalog.get(project, q) for q in queues] == ["pool-0", "pool-1"] * 4


def _catalog(options: dict[str, dict[str, str]]) -> Any:
    from zaqar import storage

    return storage.load_control_driver("sqlalchemy", options["drivers:management_store:sqlalchemy"]["uri"])


def test_websocket_push_encoding_follows_the_subscription_frame_not_later_requests(server):
    project, queue = _project(), "sticky-encoding"
    http = _http(project)
    conn = _ws_subscribe(server, queue, project, binary=True)
    try:
        reply = _ws_call(conn, "queue_get_stats", {"queue_name": queue}, project, binary=False)
        assert reply["headers"]["status"] == 200
        _post(http, server, queue, "still msgpack")
        assert _ws_frame(conn, binary=True) == _notification("still msgpack", queue)
    finally:
        conn.close()


def test_websocket_subscriber_is_not_notified_about_other_queues(server):
    project = _project()
    http = _http(project)
    conn = _ws_subscribe(server, "watched", project, binary=False)
    try:
        _post(http, server, "unwatched", "not for you")
        _post(http, server, "watched", "for you")
        assert _ws_frame(conn, binary=False) == _notification("for you", "watched")
    finally:
        conn.close()


@contextlib.contextmanager
def _shared_store_options(store: str, tmp_path: Path) -> Iterator[dict[str, dict[str, str]]]:
    if store == "sqlite":
        shared = tmp_path / "shared-state"
        shared.mkdir()
        yield {"DEFAULT": {"state_path": str(shared)}}
        return
    if store == "pooled":
        with _pooled_options(backends.sql_uri(), backends.redis_uri()) as options:
            yield options
        return
    uri_of = {"redis": backends.redis_uri, "sqlalchemy": backends.sql_uri}[store]
    with uri_of() as uri:
        yield {"drivers": {"message_store": store}, f"drivers:message_store:{store}": {"uri": uri}}


@contextlib.contextmanager
def _pooled_options(*pools: contextlib.AbstractContextManager[str]) -> Iterator[dict[str, dict[str, str]]]:
    """Pooling on, the catalog in PostgreSQL (shared by every server given these options), and
    the given stores registered as pools of equal weight."""
    from zaqar import storage

    with contextlib.ExitStack() as stack:
        catalog = stack.enter_context(backends.sql_uri())
        control = storage.load_control_driver("sqlalchemy", catalog)
        for number, pool in enumerate(pools):
            control.pools.create(f"pool-{number}", stack.enter_context(pool), 100)
        control.close()
        yield {"DEFAULT": {"pooling": "true"}, "drivers": {"management_store": "sqlalchemy"},
               "drivers:management_store:sqlalchemy": {"uri": catalog}}


@pytest.mark.parametrize("store", ["sqlite", "redis", "sqlalchemy", "pooled"])
def test_websocket_subscriber_on_one_server_gets_messages_posted_through_another(tmp_path, store):
    project, queue = _project(), "across-servers"
    http = _http(project)
    with contextlib.ExitStack() as stack:
        options = stack.enter_context(_shared_store_options(store, tmp_path))
        first = stack.enter_context(running_server(tmp_path / "first", options=options))
        second = stack.enter_context(running_server(tmp_path / "second", options=options))
        conn = _ws_subscribe(first, queue, project, binary=False)
        stack.callback(conn.close)
        (sub,) = _subscriptions(http, second, queue)  # the second server sees it in the shared store
        assert sub["subscriber"].startswith("http://127.0.0.1:") and sub["confirmed"] is True
        bodies = [{"via": "second", "n": n} for n in range(3)]
        _post(http, second, queue, *bodies)
        frames = [_ws_frame(conn, binary=False) for _ in bodies]
        assert sorted(frames, key=lambda d: d["body"]["n"]) == [_notification(b, queue) for b in bodies]
        _post(http, first, queue, "via first")  # and its own server still pushes too
        assert _ws_frame(conn, binary=False) == _notification("via first", queue)
        conn.close()
        _wait_until(lambda: _subscriptions(http, second, queue) == [], what="subscription deleted everywhere")


# -- confirmation ---------------------------------------------------------------------------------

def _confirm_with(doc: dict[str, Any], server: ServerProcess, body: dict[str, Any]) -> requests.Response:
    """PUT the confirmation the way a subscriber would: with the document's pre-signed headers."""
    headers = {"URL-Signature": doc["URL-Signature"], "URL-Expires": doc["URL-Expires"],
               "URL-Methods": ",".join(doc["URL-Methods"]), "URL-Paths": ",".join(doc["URL-Paths"]),
               "X-Project-ID": doc["X-Project-ID"], "Client-ID": str(uuid.uuid4())}
    assert doc["URL-Methods"] == ["PUT"]
    return requests.put(server.url + doc["URL-Paths"][0], json=body, headers=headers, timeout=10)


def test_confirmation_is_required_before_webhooks_get_messages(tmp_path):
    options = {"notification": {"require_confirmation": "true"}, "signed_url": {"secret_key": SECRET}}
    project, queue = _project(), "needs-confirmation"
    http = _http(project)
    with running_server(tmp_path, options=options) as srv, HttpReceiver() as hook:
        sid = _subscribe(http, srv, queue, hook.url + "/pending")
        (sent,) = hook.wait_for(1, path="/pending")
        doc = sent.json()
        path = f"/v2/queues/{queue}/subscriptions/{sid}/confirm"
        assert doc["Message_Type"] == "SubscriptionConfirmation"
        assert doc["URL-Paths"] == [path] and doc["URL-Methods"] == ["PUT"]
        assert doc["X-Project-ID"] == project
        assert doc["SubscribeBody"] == {"confirmed": True} and doc["UnsubscribeBody"] == {"confirmed": False}
        expires = datetime.datetime.strptime(doc["URL-Expires"], "%Y-%m-%dT%H:%M:%S")
        assert expires.replace(tzinfo=datetime.UTC) > datetime.datetime.now(datetime.UTC)
        assert doc["URL-Signature"] == signature(SECRET, doc["URL-Paths"], doc["URL-Methods"], project,
                                                 doc["URL-Expires"])
        assert _subscription(http, srv, queue, sid)["confirmed"] is False

        # a second subscriber, confirmed at once, shows when each message has been dispatched
        barrier = _subscribe(http, srv, queue, hook.url + "/barrier")
        hook.wait_for(1, path="/barrier")
        assert http.put(f"{srv.url}/v2/queues/{queue}/subscriptions/{barrier}/confirm",
                        json={"confirmed": True}, timeout=10).status_code == 204

        _post(http, srv, queue, "before confirming")
        hook.wait_for(2, path="/barrier")
        reply = _confirm_with(doc, srv, doc["SubscribeBody"])
        assert reply.status_code == 204, reply.text
        assert _subscription(http, srv, queue, sid)["confirmed"] is True

        _post(http, srv, queue, "after confirming")
        hook.wait_for(3, path="/barrier")
        pending = hook.wait_for(2, path="/pending")
        assert pending[1].json() == _notification("after confirming", queue)
        hook.assert_quiet(2, path="/pending")  # "before confirming" never came

        # unsubscribing: an unsubscribe confirmation, then nothing more
        assert _confirm_with(doc, srv, doc["UnsubscribeBody"]).status_code == 204
        unsubscribed = hook.wait_for(3, path="/pending")[2].json()
        assert unsubscribed["Message_Type"] == "UnsubscribeConfirmation"
        _post(http, srv, queue, "after unsubscribing")
        hook.wait_for(4, path="/barrier")
        hook.assert_quiet(3, path="/pending")


# -- mail -----------------------------------------------------------------------------------------

def test_mailto_subscriber_gets_the_notification_as_mail_body(tmp_path):
    with SmtpSink() as sink:
        options = {"notification": {"smtp_host": sink.host, "smtp_port": str(sink.port),
                                    "sender": "zaqar@notify.test"}}
        project, queue = _project(), "mailed"
        http = _http(project)
        with running_server(tmp_path, options=options) as srv:
            _subscribe(http, srv, queue, "mailto:ops@example.com?subject=Queue%20news")
            _post(http, srv, queue, {"alert": "disk full", "host": "db1"}, ttl=120)
            (mail,) = sink.wait_for(1)
    assert mail.recipients == ["ops@example.com"]
    assert mail.message["To"] == "ops@example.com"
    assert mail.message["From"] == "zaqar@notify.test"
    assert mail.message["Subject"] == "Queue news"
    assert json.loads(mail.text) == _notification({"alert": "disk full", "host": "db1"}, queue, ttl=120)
