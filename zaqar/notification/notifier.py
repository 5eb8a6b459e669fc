"""The notifier: turns posted messages into deliveries, without ever blocking a poster.

``messages_posted`` asks the store for the queue's live subscriptions, a
cheap read (cached in memory on SQLite, Redis and PostgreSQL),
and returns at once when there are none, which is the common case: no event,
no thread wake-up. Otherwise it puts one event, carrying the subscriptions,
on a bounded queue. A dispatcher thread hands one delivery per (subscription,
message) to the transport that fits its subscriber URI: a push to a
websocket connection of this process, an HTTP POST (webhooks, and
connections of other processes, which listen on a small notification
endpoint), or mail. HTTP deliveries run on a bounded pool with
at most ``per_destination`` in flight per destination, so a slow or dead
endpoint only delays its own notifications; failures are retried on the
schedule of the subscription's ``_retry_policy``.

Delivery is at-least-once while this process runs, and best-effort across
restarts: events and retries live in memory.
"""

from __future__ import annotations

import collections
import heapq
import http.client
import itertools
import json
import logging
import queue as queues
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from zaqar.notification import confirmation, mail, retry
from zaqar.storage.base import DataDriver, Subscription

LOG = logging.getLogger("zaqar.notification")

# (connection id, document, the subscription's post_headers) -> delivered? The receiver checks
# the headers as its notification endpoint would (the websocket's push token).
Push = Callable[[str, dict[str, Any], Mapping[str, Any]], bool]
# The placeholder as a JSON string value (not a key, which would make the body invalid JSON).
_TEMPLATE_VALUE = re.compile(r'"\$zaqar_message\$"(?!\s*:)')
# Bodies of the HTTP deliveries waiting, in flight or due for a retry: past this, new ones are
# dropped (a warning every 10 s) rather than holding memory for endpoints that do not answer.
MAX_PENDING_BYTES = 64 * 1024 * 1024
MAIL_WORKERS = 2  # threads sending mail (apart from the webhook pool)
_DROP_LOG_INTERVAL = 10.0


class _Delivery:
    """One HTTP POST and where it is in its retry schedule."""

    __slots__ = ("url", "body", "headers", "waits", "attempt")

    def __init__(self, url: str, body: bytes, headers: dict[str, str], waits: list[float]) -> None:
        self.url, self.body, self.headers, self.waits, self.attempt = url, body, headers, waits, 0

    @property
    def destination(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class Notifier:
    def __init__(
        self,
        store: DataDriver,
        *,
        workers: int = 10,
        per_destination: int = 2,
        timeout: float = 5.0,
        backlog: int = 10_000,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        require_confirmation: bool = False,
        signer: confirmation.Signer | None = None,
        mailer: mail.Mailer | None = None,
    ) -> None:
        self._store = store
        self._timeout, self._per_destination = timeout, per_destination
        # Schemes sent through a proxy from the environment (read once, as the process starts).
        self._proxied = frozenset(urllib.request.getproxies())
        self._require_confirmation, self._signer, self._mailer = require_confirmation, signer, mailer
        self._events: queues.Queue[tuple[Any, ...] | None] = queues.Queue(maxsize=backlog)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="zaqar-notify")
        # NOTE: mail has threads of its own: a mail server that never answers holds each for its
        # timeout, and on the webhook pool a few mailto subscribers held every project's webhooks.
        self._mail_pool = ThreadPoolExecutor(MAIL_WORKERS, thread_name_prefix="zaqar-notify-mail")
        self._local: dict[str, Push] = {}
        self._lock = threading.Condition()
        self._waiting: dict[str, collections.deque[_Delivery]] = collections.defaultdict(collections.deque)
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._timers: list[tuple[float, int, _Delivery]] = []
        self._sending: dict[object, tuple[float, http.client.HTTPConnection]] = {}  # deadline, request
        self._seq = itertools.count()
        self._max_pending_bytes, self._pending_bytes = max_pending_bytes, 0
        self._dropped, self._dropped_logged_at = 0, -_DROP_LOG_INTERVAL
        self._running = False
        self._threads: list[threading.Thread] = []

    # -- the API layer's side (never blocks on a delivery, never raises) ----------------
    def messages_posted(self, project: str | None, queue: str, documents: list[dict[str, Any]]) -> None:
        # PERF: most queues have no subscriber. Asking here, through the store's cache, costs a
        # dict lookup (a read of the store on MySQL), where handing every post
        # to the dispatcher cost ~150-300 µs of CPU per post in queue put, wake-up and GIL
        # hand-off (benchmarks/hotpath_bench.py).
        try:
            subscriptions: list[Subscription] | None = self._store.subscriptions.live(project, queue)
        except Exception as exc:  # the post is stored; the dispatcher asks again, off the request path
            LOG.info("could not read the subscriptions of queue %s (%s); the dispatcher will retry",
                     queue, exc)
            subscriptions = None
        if subscriptions is not None:
            if self._require_confirmation:
                subscriptions = [sub for sub in subscriptions if sub.confirmed]
            if not subscriptions:
                return
        self._offer(("post", project, queue, documents, subscriptions))

    def subscription_created(self, project: str | None, queue: str, subscription: Subscription) -> None:
        if self._require_confirmation and not subscription.confirmed:
            self._offer(("confirm", project, queue, subscription, "SubscriptionConfirmation"))

    def subscription_confirmed(self, project: str | None, queue: str, subscription: Subscription) -> None:
        if self._require_confirmation and not subscription.confirmed:
            self._offer(("confirm", project, queue, subscription, "UnsubscribeConfirmation"))

    def _offer(self, event: tuple[Any, ...]) -> None:
        try:
            self._events.put_nowait(event)
        except queues.Full:
            LOG.warning("notification backlog full; dropped a %s event for queue %s", event[0], event[2])

    # -- lifecycle ----------------------------------------------------------------------
    def register_local(self, base_url: str, push: Push) -> None:
        """Deliver to ``base_url<connection id>`` in process, instead of over HTTP."""
        self._local[base_url] = push

    def start(self) -> None:
        self._running = True
        loops = ((self._dispatch_loop, "zaqar-notify-dispatch"), (self._timer_loop, "zaqar-notify-timer"))
        for target, name in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._running = False
        self._events.put(None)
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._mail_pool.shutdown(wait=False, cancel_futures=True)

    def idle(self) -> bool:
        """True when nothing is queued, waiting, retrying or being sent (for tests and shutdown)."""
        with self._lock:
            busy = any(self._waiting.values()) or sum(self._in_flight.values()) or self._timers
        # NOTE: unfinished_tasks (not empty()) also covers the event the dispatcher has taken
        # off the queue and is still fanning out.
        return not self._events.unfinished_tasks and not busy

    # -- dispatch -----------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while self._running:
            event = self._events.get()
            try:
                if event is None:
                    return
                if event[0] == "post":
                    self._fan_out(*event[1:])
                else:
                    self._confirm(*event[1:])
            except Exception:  # a store outage must not kill the dispatcher; the event is lost
                LOG.exception("could not dispatch notifications for queue %s", event[2])
            finally:
                self._events.task_done()

    def _fan_out(self, project: str | None, queue: str, documents: list[dict[str, Any]],
                 subscriptions: list[Subscription] | None) -> None:
        """Deliver to ``subscriptions`` as read by the poster (None: it could not read them)."""
        if subscriptions is None:
            subscriptions = self._store.subscriptions.live(project, queue)
        if not subscriptions:
            return
        try:
            queue_meta = self._store.queues.get_metadata(project, queue)
        except Exception:
            queue_meta = {}
        for sub in subscriptions:
            if self._require_confirmation and not sub.confirmed:
                continue
            try:
                for document in documents:
                    self._deliver(sub, document, queue_meta)
            except Exception:  # one subscription's bad options must not cost the others theirs
                LOG.exception("could not notify subscription %s of queue %s", sub.id, queue)

    def _deliver(self, sub: Subscription, document: dict[str, Any], queue_meta: dict[str, Any]) -> None:
        url = sub.subscriber.removeprefix("trust+")
        scheme = urlsplit(url).scheme
        if scheme == "mailto":
            if self._mailer is not None:
                self._mail_pool.submit(self._mailer.send, url, sub.options, document)
            return
        given = sub.options.get("post_headers")
        post_headers = given if isinstance(given, dict) else {}
        for base, push in self._local.items():
            # NOTE: a push that is refused here (a wrong token) goes out over HTTP like any other,
            # and the endpoint refuses it too: in process or not, the same rule.
            if url.startswith(base) and push(url[len(base):], document, post_headers):
                return
        body = _body(document, sub.options.get("post_data"))
        headers = {"Content-Type": "application/json"}
        headers.update({str(k): str(v) for k, v in post_headers.items()})
        waits = retry.schedule(retry.effective(sub.options, queue_meta))
        self._enqueue(_Delivery(url, body, headers, waits))

    def _confirm(self, project: str | None, queue: str, sub: Subscription, kind: str) -> None:
        if self._signer is None:
            LOG.warning("require_confirmation is on but [signed_url] secret_key is not set")
            return
        document = self._signer.confirmation(project, queue, sub, kind)
        if urlsplit(sub.subscriber).scheme == "mailto":
            if self._mailer is not None:  # NOTE: on the pool: a slow mail server must not stall dispatch
                self._mail_pool.submit(self._mailer.send, sub.subscriber, sub.options, document)
            return
        url = sub.subscriber.removeprefix("trust+")
        self._enqueue(_Delivery(url, json.dumps(document).encode(), {"Content-Type": "application/json"},
                                retry.schedule(sub.options.get("_retry_policy"))))

    # -- HTTP deliveries: per-destination fairness and retries ----------------------------
    def _enqueue(self, delivery: _Delivery) -> None:
        with self._lock:
            size = len(delivery.body)
            if self._pending_bytes + size > self._max_pending_bytes:
                self._dropped += 1
                now = time.monotonic()
                if now - self._dropped_logged_at >= _DROP_LOG_INTERVAL:
                    LOG.warning("webhook deliveries hold %d bytes already; dropped %d notification(s) "
                                "since the last warning (latest for %s)", self._pending_bytes,
                                self._dropped, delivery.destination)
                    self._dropped, self._dropped_logged_at = 0, now
                return
            self._pending_bytes += size
            self._waiting[delivery.destination].append(delivery)
            self._start_ready(delivery.destination)

    def _start_ready(self, destination: str) -> None:
        waiting = self._waiting[destination]
        while waiting and self._in_flight[destination] < self._per_destination:
            self._in_flight[destination] += 1
            self._pool.submit(self._send, waiting.popleft())
        if not waiting:
            del self._waiting[destination]

    def _send(self, delivery: _Delivery) -> None:
        ok = False
        try:
            ok = self._post(delivery) < 500
        except urllib.error.HTTPError as exc:
            ok = exc.code < 500  # a 4xx is the endpoint's final answer; only 5xx is retried
        except (ValueError, http.client.InvalidURL) as exc:  # the request itself is bad: never retried
            LOG.warning("webhook %s cannot be sent: %s", delivery.url, exc)
            ok = True
        except Exception as exc:
            LOG.info("webhook %s failed: %s", delivery.url, exc)
        with self._lock:
            self._in_flight[delivery.destination] -= 1
            if ok:
                self._pending_bytes -= len(delivery.body)
            else:
                self._retry_later(delivery)
            self._start_ready(delivery.destination)
            if not self._in_flight[delivery.destination]:
                del self._in_flight[delivery.destination]

    def _post(self, delivery: _Delivery) -> int:
        """POST the delivery; its status. Cut off (an OSError) when it outlives its deadline.

        ``timeout`` bounds each socket operation only: an endpoint that answers one byte at a
        time held a worker for good, and a few such endpoints held every project's webhooks.
        The timer thread shuts the socket of a request older than 2 x ``timeout``.
        """
        parts = urlsplit(delivery.url)
        if parts.scheme not in ("http", "https") or parts.scheme in self._proxied:
            # NOTE: through a proxy (from the environment) as urllib does it, per-read timeout only
            request = urllib.request.Request(delivery.url, data=delivery.body, headers=delivery.headers,
                                             method="POST")
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return int(response.status)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "", parts.port, timeout=self._timeout)
        key = object()
        with self._lock:
            self._sending[key] = (time.monotonic() + 2 * self._timeout, conn)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", target, body=delivery.body, headers=delivery.headers)
            return int(conn.getresponse().status)
        finally:
            with self._lock:
                self._sending.pop(key, None)
            conn.close()

    def _cut_overdue(self, now: float) -> None:
        """Shut the sockets of requests past their deadline (under the lock; their worker then fails)."""
        for deadline, conn in list(self._sending.values()):
            sock = conn.sock
            if deadline <= now and sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError as exc:  # closed meanwhile
                    LOG.debug("cutting off a webhook request: %s", exc)

    def _retry_later(self, delivery: _Delivery) -> None:
        if delivery.attempt >= len(delivery.waits):
            LOG.warning("giving up on webhook %s after %d attempts", delivery.url, delivery.attempt + 1)
            self._pending_bytes -= len(delivery.body)
            return
        due = time.monotonic() + delivery.waits[delivery.attempt]
        delivery.attempt += 1
        heapq.heappush(self._timers, (due, next(self._seq), delivery))
        self._lock.notify_all()

    def _timer_loop(self) -> None:
        with self._lock:
            while self._running:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, delivery = heapq.heappop(self._timers)
                    self._waiting[delivery.destination].append(delivery)
                    self._start_ready(delivery.destination)
                self._cut_overdue(now)
                wait = self._timers[0][0] - now if self._timers else 1.0
                if self._sending:
                    wait = min(wait, 0.25)  # deadlines are checked here
                self._lock.wait(timeout=max(0.01, wait))


def _body(document: dict[str, Any], template: Any) -> bytes:
    """The POST body: the notification, or ``post_data`` with the placeholder replaced by it.

    A template given as a JSON document has the placeholder as a string value; one given as
    text (upstream's form, e.g. ``'{"m": "$zaqar_message$"}'``) is filled in as text.
    """
    message = json.dumps(document)
    if template is None:
        return message.encode()
    text = template if isinstance(template, str) else json.dumps(template)
    return _TEMPLATE_VALUE.sub(lambda _: message, text).encode()
