"""The notifier in process, on a SQLite store, delivering to real local sockets.

Every wait is bounded: on the receivers' ``wait_for`` deadlines, or on
``wait_idle`` (Notifier.idle() polled until a deadline), used only once a
delivery has been seen, so the event is past dispatch.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.receivers import Blackhole, HttpReceiver, SmtpSink
from zaqar import storage
from zaqar.notification import Notifier
from zaqar.notification.confirmation import Signer, signature
from zaqar.notification.mail import Mailer
from zaqar.storage.base import DataDriver

P, Q = "notify-project", "notify-queue"
# Two immediate retries and nothing delayed: a failing delivery is tried exactly 3 times, at once.
FAST_RETRIES = {"retries_with_no_delay": 2, "minimum_delay_retries": 0, "maximum_delay_retries": 0,
                "minimum_delay": 100, "maximum_delay": 110, "retry_backoff_function": "geometric"}


def _doc(body: Any, ttl: int = 60, queue: str = Q) -> dict[str, Any]:
    return {"body": body, "ttl": ttl, "queue_name": queue, "Message_Type": "Notification"}


def wait_idle(notifier: Notifier, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not notifier.idle():
        assert time.monotonic() < deadline, f"notifier still busy after {timeout}s"
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DataDriver]:
    driver = storage.load_data_driver("sqlite", f"sqlite:///{tmp_path / 'z.sqlite'}")
    yield driver
    driver.close()


@pytest.fixture
def make_notifier(store: DataDriver) -> Iterator[Callable[..., Notifier]]:
    """Build and start notifiers on the store; each is stopped at teardown."""
    started: list[Notifier] = []

    def make(start: bool = True, **kwargs: Any) -> Notifier:
        notifier = Notifier(store, **kwargs)
        if start:
            notifier.start()
        started.append(notifier)
        return notifier

    yield make
    for notifier in started:
        notifier.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as hook:
        yield hook


def subscribe(store: DataDriver, subscriber: str, options: dict[str, Any] | None = None, *,
              confirmed: bool = False, queue: str = Q) -> str:
    sid = store.subscriptions.create(P, queue, subscriber, 3600, options or {})
    if confirmed:
        store.subscriptions.confirm(P, queue, sid, True)
    return sid


# -- what is delivered --------------------------------------------------------------------------

def test_every_subscriber_gets_one_post_per_message(store, make_notifier, receiver):
    subscribe(store, receiver.url + "/one")
    subscribe(store, receiver.url + "/two")
    subscribe(store, receiver.url + "/other-queue", queue="elsewhere")
    notifier = make_notifier()
    documents = [_doc({"n": i}) for i in range(3)]
    notifier.messages_posted(P, Q, documents)
    for path in ("/one", "/two"):
        posts = receiver.wait_for(3, path=path)
        assert sorted((p.json() for p in posts), key=lambda d: d["body"]["n"]) == documents
        assert all(p.headers["Content-Type"] == "application/json" for p in posts)
    wait_idle(notifier)
    assert receiver.received("/other-queue") == []
    assert len(receiver.received()) == 6


def test_other_projects_subscriptions_are_not_notified(store, make_notifier, receiver):
    subscribe(store, receiver.url + "/mine")
    notifier = make_notifier()
    notifier.messages_posted("another-project", Q, [_doc("theirs")])
    notifier.messages_posted(P, Q, [_doc("mine")])
    assert [p.json()["body"] for p in receiver.wait_for(1)] == ["mine"]
    wait_idle(notifier)
    assert len(receiver.received()) == 1


def test_post_headers_and_post_data_template(store, make_notifier, receiver):
    options = {"post_headers": {"X-Token": "s3cret", "X-Number": 5},
               "post_data": {"event": "$zaqar_message$", "source": "zaqar", "list": [1, "$zaqar_message$"]}}
    subscribe(store, receiver.url + "/templated", options)
    make_notifier().messages_posted(P, Q, [_doc({"status": "disco queen"})])
    (post,) = receiver.wait_for(1)
    assert post.headers["X-Token"] == "s3cret"
    assert post.headers["X-Number"] == "5"
    assert post.headers["Content-Type"] == "application/json"
    document = _doc({"status": "disco queen"})
    assert post.json() == {"event": document, "source": "zaqar", "list": [1, document]}


def test_post_headers_can_replace_the_content_type(store, make_notifier, receiver):
    subscribe(store, receiver.url, {"post_headers": {"Content-Type": "application/vnd.custom+json"}})
    make_notifier().messages_posted(P, Q, [_doc(1)])
    assert receiver.wait_for(1)[0].headers["Content-Type"] == "application/vnd.custom+json"


def test_trust_subscriber_is_posted_to_its_http_url(store, make_notifier, receiver):
    subscribe(store, "trust+" + receiver.url + "/trusted")
    make_notifier().messages_posted(P, Q, [_doc("t")])
    assert receiver.wait_for(1, path="/trusted")[0].json() == _doc("t")


# -- retries ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 404, 410, 499])
def test_4xx_is_a_final_answer_and_not_retried(store, make_notifier, status):
    with HttpReceiver(statuses=[status]) as hook:
        subscribe(store, hook.url, {"_retry_policy": FAST_RETRIES})
        notifier = make_notifier()
        notifier.messages_posted(P, Q, [_doc("x")])
        hook.wait_for(1, delivered_only=False)
        wait_idle(notifier)
        assert [p.status for p in hook.received(delivered_only=False)] == [status]


def test_5xx_is_retried_until_the_schedule_is_used_up(store, make_notifier):
    with HttpReceiver(default_status=500, statuses=[503, 502]) as hook:
        subscribe(store, hook.url, {"_retry_policy": FAST_RETRIES})
        notifier = make_notifier()
        notifier.messages_posted(P, Q, [_doc("x")])
        hook.wait_for(3, delivered_only=False)
        wait_idle(notifier)  # gave up: nothing waiting or scheduled
        posts = hook.received(delivered_only=False)
        assert [p.status for p in posts] == [503, 502, 500]  # the first attempt and 2 retries
        assert {p.body for p in posts} == {json.dumps(_doc("x")).encode()}


def test_5xx_then_success_delivers_once(store, make_notifier):
    with HttpReceiver(statuses=[500]) as hook:
        subscribe(store, hook.url, {"_retry_policy": FAST_RETRIES})
        notifier = make_notifier()
        notifier.messages_posted(P, Q, [_doc("x")])
        assert hook.wait_for(1)[0].json() == _doc("x")
        wait_idle(notifier)
        assert [p.status for p in hook.received(delivered_only=False)] == [500, 200]


def test_default_policy_retries_immediately_three_times(store, make_notifier):
    with HttpReceiver(statuses=[500, 500, 500]) as hook:
        subscribe(store, hook.url)
        notifier = make_notifier()
        notifier.messages_posted(P, Q, [_doc("x")])
        hook.wait_for(1, timeout=5)  # the 4th attempt: no delay before it
        wait_idle(notifier)
        assert [p.status for p in hook.received(delivered_only=False)] == [500, 500, 500, 200]


def test_a_minimum_delay_retry_waits_the_minimum_delay(store, make_notifier):
    policy = {"retries_with_no_delay": 0, "minimum_delay_retries": 1, "minimum_delay": 1,
              "maximum_delay": 2, "maximum_delay_retries": 0}
    with HttpReceiver(statuses=[500]) as hook:
        subscribe(store, hook.url, {"_retry_policy": policy})
        make_notifier().messages_posted(P, Q, [_doc("x")])
        hook.wait_for(1, timeout=10)
        first, second = hook.received(delivered_only=False)
        assert 0.9 <= second.at - first.at < 5


def test_queue_policy_that_ignores_overrides_wins(store, make_notifier):
    no_retry = {**FAST_RETRIES, "retries_with_no_delay": 0, "ignore_subscription_override": True}
    store.queues.create(P, Q, {"_retry_policy": no_retry})
    with HttpReceiver(default_status=500) as hook:
        subscribe(store, hook.url, {"_retry_policy": FAST_RETRIES})  # would allow 2 retries
        notifier = make_notifier()
        notifier.messages_posted(P, Q, [_doc("x")])
        hook.wait_for(1, delivered_only=False)
        wait_idle(notifier)
        assert len(hook.received(delivered_only=False)) == 1


def test_connection_refused_is_retried_then_given_up(store, make_notifier, receiver):
    with HttpReceiver() as gone:
        url = gone.url
    subscribe(store, url + "/closed", {"_retry_policy": FAST_RETRIES})
    subscribe(store, receiver.url + "/open")
    notifier = make_notifier()
    notifier.messages_posted(P, Q, [_doc("x")])
    receiver.wait_for(1)
    wait_idle(notifier)  # the refused delivery's 3 attempts are over


# -- fairness: a dead endpoint only delays itself ----------------------------------------------

def test_a_blackhole_destination_does_not_delay_a_healthy_one(store, make_notifier, receiver):
    with Blackhole() as hole:
        subscribe(store, hole.url + "/dead")  # first: its deliveries are queued before the healthy ones
        subscribe(store, receiver.url + "/alive")
        notifier = make_notifier(timeout=60.0, workers=10, per_destination=2)
        started = time.monotonic()
        for i in range(20):
            notifier.messages_posted(P, Q, [_doc(i)])
        posts = receiver.wait_for(20, timeout=10, path="/alive")
        elapsed = time.monotonic() - started
        assert sorted(p.json()["body"] for p in posts) == list(range(20))
        assert elapsed < 5, f"healthy receiver took {elapsed:.1f}s for 20 notifications"
        hole.wait_for_requests(1)
        # the 20 deliveries to the blackhole are still pending, at most 2 of them on the wire
        assert not notifier.idle()
        assert 1 <= hole.open_connections <= 2 and hole.accepted <= 2


def test_two_blackholes_leave_the_pool_to_a_healthy_destination(store, make_notifier, receiver):
    with Blackhole() as hole1, Blackhole() as hole2:
        subscribe(store, hole1.url)
        subscribe(store, hole2.url)
        subscribe(store, receiver.url)
        notifier = make_notifier(timeout=60.0, workers=6, per_destination=2)
        notifier.messages_posted(P, Q, [_doc(i) for i in range(10)])
        assert len(receiver.wait_for(10, timeout=10)) == 10
        assert hole1.accepted <= 2 and hole2.accepted <= 2


# -- never blocking the poster ------------------------------------------------------------------

def test_messages_posted_never_blocks_and_drops_beyond_the_backlog(store, make_notifier, receiver, caplog):
    subscribe(store, receiver.url)
    notifier = make_notifier(start=False, backlog=1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="zaqar.notification"):
        for i in range(3):
            notifier.messages_posted(P, Q, [_doc(i)])
    assert time.monotonic() - started < 2  # blocked, it would wait forever: the notifier is not started
    assert sum("backlog full" in r.getMessage() for r in caplog.records) == 2
    notifier.start()
    assert [p.json()["body"] for p in receiver.wait_for(1)] == [0]
    wait_idle(notifier)
    assert len(receiver.received()) == 1


class _FlakySubscriptions:
    def __init__(self, real: Any, failures: int) -> None:
        self._real, self.failures, self.calls = real, failures, 0

    def live(self, project: str | None, queue: str) -> Any:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store unreachable")
        return self._real.live(project, queue)


class _FlakyStore:
    """The real store, whose first ``failures`` ``subscriptions.live`` calls fail as during an outage."""

    def __init__(self, real: DataDriver, failures: int = 1) -> None:
        self.queues, self.subscriptions = real.queues, _FlakySubscriptions(real.subscriptions, failures)


def test_a_failed_read_on_the_posters_thread_is_retried_by_the_dispatcher(store, receiver):
    subscribe(store, receiver.url)
    notifier = Notifier(_FlakyStore(store, failures=1))  # type: ignore[arg-type]
    notifier.start()
    try:
        notifier.messages_posted(P, Q, [_doc("delivered anyway")])  # must not raise
        assert [p.json()["body"] for p in receiver.wait_for(1)] == ["delivered anyway"]
    finally:
        notifier.stop()


def test_a_store_outage_loses_that_event_but_not_the_dispatcher(store, receiver, caplog):
    subscribe(store, receiver.url)
    flaky = _FlakyStore(store, failures=2)
    notifier = Notifier(flaky)  # type: ignore[arg-type]
    notifier.start()
    try:
        with caplog.at_level(logging.ERROR, logger="zaqar.notification"):
            notifier.messages_posted(P, Q, [_doc("lost")])  # the poster's read and the dispatcher's fail
            wait_idle(notifier)
            assert flaky.subscriptions.calls == 2
            notifier.messages_posted(P, Q, [_doc("delivered")])
            assert [p.json()["body"] for p in receiver.wait_for(1)] == ["delivered"]
            wait_idle(notifier)
        assert any("could not dispatch" in r.getMessage() for r in caplog.records)
        assert len(receiver.received()) == 1
    finally:
        notifier.stop()


def test_a_queue_nobody_subscribes_to_never_reaches_the_dispatcher(store, make_notifier, receiver):
    subscribe(store, receiver.url, queue="elsewhere")
    notifier = make_notifier(start=False, backlog=1)  # nothing drains the backlog of one
    for i in range(5):
        notifier.messages_posted(P, Q, [_doc(i)])
    assert notifier.idle()  # no event was queued, so the backlog is still free for ...
    notifier.messages_posted(P, "elsewhere", [_doc("subscribed", queue="elsewhere")])
    assert not notifier.idle()  # ... the queue that has a subscriber
    notifier.start()
    assert [p.json()["body"] for p in receiver.wait_for(1)] == ["subscribed"]


# -- websocket connections of this process -------------------------------------------------------

def test_local_connections_are_pushed_to_in_process(store, make_notifier, receiver):
    base = receiver.url + "/"
    pushed: list[tuple[str, dict[str, Any]]] = []
    subscribe(store, base + "conn-here", confirmed=True)
    subscribe(store, base + "conn-elsewhere", confirmed=True)
    notifier = make_notifier()

    def push(connection: str, document: dict[str, Any], headers: Any) -> bool:
        pushed.append((connection, document))
        return connection == "conn-here"

    notifier.register_local(base, push)
    notifier.messages_posted(P, Q, [_doc("hi")])
    # not a connection of this process: POSTed to the subscriber URL like any webhook
    assert receiver.wait_for(1, path="/conn-elsewhere")[0].json() == _doc("hi")
    wait_idle(notifier)
    assert sorted(pushed, key=lambda item: item[0]) == [("conn-elsewhere", _doc("hi")),
                                                        ("conn-here", _doc("hi"))]
    assert receiver.received("/conn-here") == []


# -- confirmation ---------------------------------------------------------------------------------

def test_unconfirmed_subscribers_get_only_a_confirmation_until_confirmed(store, make_notifier, receiver):
    signer = Signer("confirm-key", lifetime=600)
    notifier = make_notifier(require_confirmation=True, signer=signer)
    sid = subscribe(store, receiver.url + "/hook")
    notifier.subscription_created(P, Q, store.subscriptions.get(P, Q, sid))
    (confirmation,) = receiver.wait_for(1)
    doc = confirmation.json()
    assert doc["Message_Type"] == "SubscriptionConfirmation"
    assert doc["URL-Paths"] == [f"/v2/queues/{Q}/subscriptions/{sid}/confirm"]
    assert doc["URL-Signature"] == signature("confirm-key", doc["URL-Paths"], ["PUT"], P, doc["URL-Expires"])

    notifier.messages_posted(P, Q, [_doc("too early")])
    wait_idle(notifier)
    assert len(receiver.received()) == 1

    store.subscriptions.confirm(P, Q, sid, True)
    notifier.messages_posted(P, Q, [_doc("welcome")])
    assert receiver.wait_for(2)[1].json() == _doc("welcome")


def test_unsubscribing_sends_an_unsubscribe_confirmation(store, make_notifier, receiver):
    notifier = make_notifier(require_confirmation=True, signer=Signer("k"))
    sid = subscribe(store, receiver.url, confirmed=True)
    store.subscriptions.confirm(P, Q, sid, False)
    notifier.subscription_confirmed(P, Q, store.subscriptions.get(P, Q, sid))
    doc = receiver.wait_for(1)[0].json()
    assert doc["Message_Type"] == "UnsubscribeConfirmation"
    assert doc["Message"] == f"You have chosen to unsubscribe from the queue: {Q}"


def test_confirmation_document_is_signed_for_its_expiry():
    signer = Signer("k", lifetime=600, clock=lambda: 1_700_000_000.0)
    store_sub = _subscription("abc123")
    doc = signer.confirmation(P, Q, store_sub, "SubscriptionConfirmation")
    assert doc == {
        "Message_Type": "SubscriptionConfirmation",
        "Message": f"You have chosen to subscribe to the queue: {Q}",
        "URL-Signature": signature("k", [f"/v2/queues/{Q}/subscriptions/abc123/confirm"], ["PUT"], P,
                                   "2023-11-14T22:23:20"),
        "URL-Methods": ["PUT"],
        "URL-Paths": [f"/v2/queues/{Q}/subscriptions/abc123/confirm"],
        "X-Project-ID": P,
        "URL-Expires": "2023-11-14T22:23:20",
        "SubscribeBody": {"confirmed": True},
        "UnsubscribeBody": {"confirmed": False},
        "Queue_Name": Q,
    }
    expires = datetime.datetime.strptime(doc["URL-Expires"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
    assert expires.timestamp() == 1_700_000_000 + 600


def test_signature_depends_on_every_signed_part():
    paths, methods, expires = ["/v2/queues/q/subscriptions/s/confirm"], ["PUT"], "2030-01-01T00:00:00"
    base = signature("k", paths, methods, "p", expires)
    assert len(base) == 64 and int(base, 16) >= 0
    assert signature("k", list(reversed(paths + ["/b"])), methods, "p", expires) == signature(
        "k", paths + ["/b"], methods, "p", expires)  # order of paths does not matter
    others = [signature("other", paths, methods, "p", expires), signature("k", ["/x"], methods, "p", expires),
              signature("k", paths, ["GET"], "p", expires), signature("k", paths, methods, "q", expires),
              signature("k", paths, methods, "p", "2030-01-01T00:00:01")]
    assert base not in others and len(set(others)) == len(others)


def _subscription(sid: str) -> Any:
    from zaqar.storage.base import Subscription

    return Subscription(id=sid, source=Q, subscriber="http://x", ttl=60, age=0, options={}, confirmed=False)


# -- mail -----------------------------------------------------------------------------------------

def test_mailto_subscribers_get_the_notification_as_mail(store, make_notifier):
    with SmtpSink() as sink:
        mailer = Mailer(sink.host, sink.port, sender="zaqar@test.example")
        subscribe(store, "mailto:ops@example.com?subject=From%20the%20URI",
                  {"subject": "from options", "from": "queue@test.example"})
        subscribe(store, "mailto:dev@example.com", {"subject": "from options"})
        subscribe(store, "mailto:plain@example.com")
        make_notifier(mailer=mailer).messages_posted(P, Q, [_doc({"alert": "disk full"})])
        mails = {m.recipients[0]: m for m in sink.wait_for(3)}
    assert set(mails) == {"ops@example.com", "dev@example.com", "plain@example.com"}
    for mail in mails.values():
        assert json.loads(mail.text) == _doc({"alert": "disk full"})
        assert mail.message["To"] == mail.recipients[0]
    assert mails["ops@example.com"].message["Subject"] == "From the URI"  # the URI wins over the option
    assert mails["ops@example.com"].message["From"] == "queue@test.example"
    assert mails["dev@example.com"].message["Subject"] == "from options"
    assert mails["dev@example.com"].message["From"] == "zaqar@test.example"
    assert mails["plain@example.com"].message["Subject"] == "Zaqar notification"


def test_mailto_without_a_mailer_is_skipped(store, make_notifier, receiver):
    subscribe(store, "mailto:nobody@example.com")
    subscribe(store, receiver.url)
    make_notifier(mailer=None).messages_posted(P, Q, [_doc("x")])
    assert receiver.wait_for(1)[0].json() == _doc("x")


# -- the idle() helper itself ---------------------------------------------------------------------

def test_idle_is_false_while_an_event_is_being_dispatched(store, make_notifier):
    entered, release = threading.Event(), threading.Event()

    def slow_push(connection: str, document: dict[str, Any], headers: Any) -> bool:
        entered.set()
        release.wait(10)
        return True

    subscribe(store, "local://conn-1", confirmed=True)
    notifier = make_notifier()
    notifier.register_local("local://", slow_push)
    try:
        notifier.messages_posted(P, Q, [_doc("x")])
        assert entered.wait(5)
        busy = not notifier.idle()  # the dispatcher took the event off the queue and is pushing it
    finally:
        release.set()
    wait_idle(notifier)
    assert busy


# -- review: one subscription's odd options, text templates, memory held for dead endpoints ----------

def test_a_queue_retry_policy_that_is_not_an_object_costs_no_subscriber_its_notification(
        store, make_notifier, receiver):
    store.queues.create(P, Q, {"_retry_policy": "x"})  # the contract does not validate it
    subscribe(store, receiver.url + "/a", confirmed=True)
    subscribe(store, receiver.url + "/b", {"_retry_policy": {"retries_with_no_delay": "abc"}}, confirmed=True)
    make_notifier().messages_posted(P, Q, [_doc("hi")])
    assert len(receiver.wait_for(1, path="/a")) == 1
    assert len(receiver.wait_for(1, path="/b")) == 1


def test_a_post_data_template_given_as_text_is_filled_in(store, make_notifier, receiver):
    subscribe(store, receiver.url, {"post_data": '{"m": "$zaqar_message$", "$zaqar_message$": 1}'})
    make_notifier().messages_posted(P, Q, [_doc("hi")])
    (post,) = receiver.wait_for(1)
    assert post.json() == {"m": _doc("hi"), "$zaqar_message$": 1}  # as a value only: a key stays a key


def test_bodies_held_for_endpoints_that_do_not_answer_are_bounded(store, make_notifier, receiver, caplog):
    with Blackhole() as hole:
        subscribe(store, hole.url + "/dead")
        notifier = make_notifier(timeout=60.0, workers=4, per_destination=2, max_pending_bytes=50_000)
        with caplog.at_level(logging.WARNING, logger="zaqar.notification"):
            for i in range(100):
                notifier.messages_posted(P, Q, [_doc("x" * 1000 + str(i))])
            deadline = time.monotonic() + 10
            while not any("dropped" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "nothing was dropped"
                time.sleep(0.01)
        assert notifier._pending_bytes <= 50_000


def test_endpoints_answering_a_byte_at_a_time_are_cut_off_and_free_the_workers(
        store, make_notifier, receiver):
    """Review: the timeout bounds each read, so a trickling answer held a worker for good."""
    import socket as sockets

    stop = threading.Event()

    def trickle(conn: sockets.socket) -> None:
        with conn:
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.wait(0.2):
                    conn.sendall(b"a")  # well within the per-read timeout, for ever
            except OSError:
                return

    def serve(listener: sockets.socket) -> None:
        for _ in range(2):  # per_destination requests at once
            threading.Thread(target=trickle, args=(listener.accept()[0],), daemon=True).start()

    listeners = []
    for _ in range(3):
        listener = sockets.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        subscribe(store, f"http://127.0.0.1:{listener.getsockname()[1]}/", {"_retry_policy": {
            "retries_with_no_delay": 0, "minimum_delay_retries": 0, "maximum_delay_retries": 0,
            "minimum_delay": 0, "maximum_delay": 0}})
    subscribe(store, receiver.url + "/healthy", queue="other")
    try:
        notifier = make_notifier(timeout=0.5, workers=6, per_destination=2)
        notifier.messages_posted(P, Q, [_doc(1), _doc(2)])  # every worker now waits on a trickle
        time.sleep(0.2)
        notifier.messages_posted(P, "other", [_doc("hi", queue="other")])
        assert len(receiver.wait_for(1, timeout=5, path="/healthy")) == 1  # after ~2 x timeout, not never
    finally:
        stop.set()
        for listener in listeners:
            listener.close()


def test_a_mail_server_that_never_answers_does_not_hold_the_webhooks(store, make_notifier, receiver):
    """Review: mail ran on the webhook pool, so mailto subscribers of a dead mail server held it."""
    with Blackhole() as smtp:
        port = int(smtp.url.rsplit(":", 1)[1])
        notifier = make_notifier(mailer=Mailer("127.0.0.1", port, timeout=30.0), workers=4)
        for i in range(8):
            subscribe(store, f"mailto:x{i}@example.com", queue="mailed")
        subscribe(store, receiver.url + "/hook")
        notifier.messages_posted(P, "mailed", [_doc("m", queue="mailed")])
        time.sleep(0.2)  # the mails are on their way to a server that will not answer
        notifier.messages_posted(P, Q, [_doc("hi")])
        assert len(receiver.wait_for(1, timeout=10, path="/hook")) == 1  # not after 30 s
