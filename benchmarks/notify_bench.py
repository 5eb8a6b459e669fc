"""Post-to-delivery latency: websocket push notifications vs polling the REST API.

    python -m benchmarks.notify_bench [--seconds S] [--rate R] [--poll-interval P] [--tight-interval T]

One zaqar-server (HTTP + websocket, started here, stopped at the end); every
scenario gets its own fresh queue. A poster thread POSTs one message at a time
over a kept-alive HTTP connection at a fixed ``--rate`` for ``--seconds``; each
body carries its sequence number and ``time.monotonic()`` taken just before the
request is built and sent. The body has to carry it: a push can arrive before
the POST's own reply, so the receiver cannot wait for the poster to note the
time. ``time.monotonic()`` is CLOCK_MONOTONIC, so poster and receiver (threads
of this process) read the same clock.

Scenarios, each with its own receiver:

* ``push-json`` / ``push-msgpack``: a websocket-client connection sends
  ``subscription_create`` with no subscriber (JSON text or MessagePack binary
  frame); the server binds the subscription to the connection and pushes one
  frame per message. Latency = frame received minus the body's send time.
* ``poll-1s``: a client GETs ``/v2/queues/Q/messages?limit=20&echo=true`` every
  ``--poll-interval`` seconds, following the ``next`` link (its marker) so each
  GET returns only what is new, and fetching the next page at once when a page
  comes back full. Listing, not claim+delete: a push subscription is a
  non-destructive fan-out (every subscriber sees every message, nothing is
  removed), and the consumer that matches it is one that reads the queue as a
  feed with its own marker. A claim+delete worker would add a claim and a
  delete per message to the server's work and measure a work queue instead.
  Latency = the GET's response received minus the body's send time.
* ``poll-tight``: the same with ``--tight-interval`` (default 0.05 s), the
  closest thing to long-polling: the server has no long-poll, so a client that
  wants low latency can only poll often, and pays for it in requests.

Delivered messages are matched by sequence number; ``lost`` are messages
posted (201) but never seen within a grace period after the last post.
``srv ms/msg`` is the server's CPU time (``servers.cpu_seconds``) from the
first post to the last delivery, divided by delivered messages: it includes the
POSTs, and for polling the empty polls, which is the point of comparing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import select
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgpack
import websocket

from benchmarks import servers
from benchmarks.common import Probe, db_delta, log, percentile
from benchmarks.http_bench import PROJECT, Conn, build_request

TTL = 600
PAGE = 20  # [transport] max_messages_per_page default: the most one GET may return
HOST = "127.0.0.1"


@dataclasses.dataclass
class Scenario:
    name: str
    label: str
    binary: bool = False
    interval: float | None = None  # None: websocket push; else the polling interval in seconds


class Tracker:
    """What the poster sent and what the receiver saw, keyed by sequence number (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posted: list[int] = []
        self.latency: dict[int, float] = {}  # seq -> seconds, first sighting only
        self.post_errors = self.receive_errors = self.duplicates = self.requests = 0
        self.first_error = ""
        self.warm = threading.Event()  # the warm-up message (seq -1) went all the way through

    def saw(self, body: Any, now: float) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
            return
        seq = body["seq"]
        if seq < 0:
            self.warm.set()
            return
        with self.lock:
            if seq in self.latency:
                self.duplicates += 1
            else:
                self.latency[seq] = now - float(body["sent"])

    def error(self, what: str) -> None:
        with self.lock:
            self.receive_errors += 1
            self.first_error = self.first_error or what[:300]

    def missing(self) -> int:
        with self.lock:
            return sum(1 for seq in self.posted if seq not in self.latency)


def post_one(conn: Conn, port: int, queue: str, client_id: str, seq: int) -> int:
    """POST one message whose body carries ``seq`` and its send time; returns the HTTP status."""
    sent = time.monotonic()
    body = json.dumps({"messages": [{"ttl": TTL, "body": {"seq": seq, "sent": sent, "pad": "x" * 48}}]})
    return conn.request(build_request("POST", f"/v2/queues/{queue}/messages", f"{HOST}:{port}", client_id,
                                      body.encode()))[0]


def poster(port: int, queue: str, rate: float, count: int, tracker: Tracker) -> None:
    """``count`` POSTs on an absolute schedule (start + n / rate), so a slow reply does not shift the rest."""
    conn, client_id = Conn(HOST, port), str(uuid.uuid4())
    start = time.monotonic()
    try:
        for seq in range(count):
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status = post_one(conn, port, queue, client_id, seq)
            with tracker.lock:
                if status == 201:
                    tracker.posted.append(seq)
                else:
                    tracker.post_errors += 1
    finally:
        conn.close()


def ws_subscribe(ws_port: int, queue: str, binary: bool) -> websocket.WebSocket:
    """A connection with a subscription bound to it (no subscriber URI), in JSON or MessagePack."""
    ws = websocket.create_connection(f"ws://{HOST}:{ws_port}/", timeout=10)
    doc = {"action": "subscription_create", "headers": {
        "Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT},
           "body": {"queue_name": queue, "ttl": 600}}
    if binary:
        ws.send_binary(msgpack.packb(doc, use_bin_type=True))
    else:
        ws.send(json.dumps(doc))
    _, data = ws.recv_data()
    reply = msgpack.unpackb(data, raw=False) if binary else json.loads(data)
    if reply.get("headers", {}).get("status") != 201:
        ws.close()
        raise RuntimeError(f"subscription_create failed: {str(reply)[:300]}")
    return ws


def push_receiver(ws: websocket.WebSocket, tracker: Tracker, stop: threading.Event) -> None:
    """Read pushed frames until ``stop``; select() first so a timeout never cuts a frame in half."""
    while not stop.is_set():
        if not select.select([ws.sock], [], [], 0.1)[0]:
            continue
        try:
            opcode, data = ws.recv_data()  # reads exactly one frame; bounded by the 10 s socket timeout
        except (websocket.WebSocketException, OSError) as exc:
            tracker.error(f"websocket: {exc!r}")
            return
        now = time.monotonic()
        try:
            binary = opcode == websocket.ABNF.OPCODE_BINARY
            doc = msgpack.unpackb(data, raw=False) if binary else json.loads(data)
        except ValueError as exc:
            tracker.error(f"undecodable frame: {exc}")
            continue
        tracker.saw(doc.get("body") if isinstance(doc, dict) else None, now)


def poll_receiver(port: int, queue: str, interval: float, tracker: Tracker, stop: threading.Event) -> None:
    """GET new messages every ``interval`` s (fixed cadence), following the next link's marker."""
    conn, client_id = Conn(HOST, port), str(uuid.uuid4())
    path = f"/v2/queues/{queue}/messages?limit={PAGE}&echo=true"
    due = time.monotonic()
    try:
        while not stop.is_set():
            status, body = conn.request(build_request("GET", path, f"{HOST}:{port}", client_id))
            now = time.monotonic()
            with tracker.lock:
                tracker.requests += 1
            found: list[Any] = []
            if status == 200:
                doc = json.loads(body)
                found = doc["messages"]
                for m in found:
                    tracker.saw(m.get("body"), now)
                path = next((link["href"] for link in doc.get("links", []) if link["rel"] == "next"), path)
            elif status != 204:
                tracker.error(f"GET -> {status}: {body[:200]!r}")
            if len(found) == PAGE:
                continue  # a full page: more may be waiting, fetch it now
            due = max(due + interval, now)
            stop.wait(due - time.monotonic())
    finally:
        conn.close()


@dataclasses.dataclass
class Result:
    scenario: str
    label: str
    posted: int
    post_errors: int
    delivered: int
    lost: int
    duplicates: int
    receive_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms_per_msg: float | None
    gets: int
    first_error: str = ""
    store_cpu_ms_per_msg: float | None = None  # the database server's (run_scenario's store_pids)
    gen_cpu_pct: float | None = None  # this process's CPU while posting and receiving, % of one core


class Listening(Protocol):
    """A zaqar-server on HOST: a ``servers.ServerProcess``, or one started elsewhere."""

    @property
    def port(self) -> int: ...  # HTTP

    @property
    def websocket_port(self) -> int | None: ...

    @property
    def pid(self) -> int: ...


def run_scenario(sc: Scenario, server: Listening, args: argparse.Namespace, log: Callable[[str], None],
                 store_pids: Callable[[], Sequence[int]] = tuple) -> Result:
    """Subscribe or start polling, prime with one message, post at ``args.rate`` for ``args.seconds``,
    wait for delivery or grace. CPU is charged to the server ``pid`` and to the ``store_pids``."""
    queue = f"notify-{uuid.uuid4().hex[:8]}-{sc.name}"
    tracker, stop = Tracker(), threading.Event()
    ws = None
    if sc.interval is None:
        assert server.websocket_port is not None
        ws = ws_subscribe(server.websocket_port, queue, sc.binary)
        receiver = threading.Thread(target=push_receiver, args=(ws, tracker, stop), daemon=True)
    else:
        receiver = threading.Thread(target=poll_receiver,
                                    args=(server.port, queue, sc.interval, tracker, stop),
                                    daemon=True)
    receiver.start()
    try:
        warm_conn = Conn(HOST, server.port)
        post_one(warm_conn, server.port, queue, str(uuid.uuid4()), -1)  # creates the queue, warms the path
        warm_conn.close()
        if not tracker.warm.wait(10 + (sc.interval or 0)):
            raise RuntimeError(f"{sc.name}: the warm-up message was not delivered within 10 s")
        count = max(1, round(args.rate * args.seconds))
        log(f"{sc.name}: posting {count} messages at {args.rate:g}/s to {queue}")
        probe = Probe(server.pid, store_pids)
        before, started = probe.read(), time.monotonic()
        poster(server.port, queue, args.rate, count, tracker)
        grace_end = time.monotonic() + max(5.0, 3 * (sc.interval or 0))
        while tracker.missing() and time.monotonic() < grace_end and receiver.is_alive():
            time.sleep(0.005)
        after, elapsed = probe.read(), time.monotonic() - started
    finally:
        stop.set()
        receiver.join(timeout=15)
        if ws is not None:
            ws.close()
    with tracker.lock:
        lat = sorted(tracker.latency[s] for s in tracker.posted if s in tracker.latency)
        lost = len(tracker.posted) - len(lat)
    cpu, store_cpu = (after[1] or 0.0) - (before[1] or 0.0), db_delta(before[2], after[2])
    return Result(sc.name, sc.label, len(tracker.posted), tracker.post_errors, len(lat), lost,
                  tracker.duplicates,
                  tracker.receive_errors, percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000,
                  (lat[-1] if lat else float("nan")) * 1000, cpu * 1000 / len(lat) if lat else None,
                  tracker.requests, tracker.first_error,
                  store_cpu * 1000 / len(lat) if lat and store_cpu is not None else None,
                  100 * (after[0] - before[0]) / elapsed)


def print_table(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    head = (f"{'scenario':<13} {'how':<36} {'posted':>6} {'deliv':>6} {'lost':>5} {'dup':>4} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'max ms':>8} {'srv ms/msg':>10} {'GETs':>5}")
    out(head)
    out("-" * len(head))
    for r in results:
        cpu = f"{r.server_cpu_ms_per_msg:.3f}" if r.server_cpu_ms_per_msg is not None else "n/a"
        out(f"{r.scenario:<13} {r.label:<36} {r.posted:>6} {r.delivered:>6} {r.lost:>5} {r.duplicates:>4} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} {cpu:>10} {r.gets:>5}")
        if r.post_errors or r.receive_errors:
            out(f"  {r.post_errors} POST errors, {r.receive_errors} receive errors; first: {r.first_error}")


def ratios(results: Sequence[Result]) -> dict[str, dict[str, float]]:
    """p50 and p99 of each polling scenario divided by each push scenario's."""
    by = {r.scenario: r for r in results}
    out: dict[str, dict[str, float]] = {}
    for poll in ("poll-1s", "poll-tight"):
        for push in ("push-json", "push-msgpack"):
            a, b = by[poll], by[push]
            out[f"{poll} / {push}"] = {"p50": a.p50_ms / b.p50_ms if b.p50_ms else float("nan"),
                                       "p99": a.p99_ms / b.p99_ms if b.p99_ms else float("nan")}
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notify_bench",
                                     description="Post-to-delivery latency: websocket push vs REST polling.")
    parser.add_argument("--seconds", type=float, default=10.0, help="posting time per scenario (default 10)")
    parser.add_argument("--rate", type=float, default=20.0, help="messages posted per second (default 20)")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="interval of the short-polling client, seconds (default 1.0)")
    parser.add_argument("--tight-interval", type=float, default=0.05,
                        help="interval of the tight-polling client, seconds (default 0.05)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 600 and 0 < args.rate <= 1000 and args.poll_interval >= 0.01
            and args.tight_interval >= 0.01):
        parser.error("need 0 < --seconds <= 600, 0 < --rate <= 1000, intervals >= 0.01")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [
        Scenario("push-json", "websocket push, JSON text frames", binary=False),
        Scenario("push-msgpack", "websocket push, msgpack binary frames", binary=True),
        Scenario("poll-1s", f"GET every {args.poll_interval:g}s (short polling)",
                 interval=args.poll_interval),
        Scenario("poll-tight", f"GET every {args.tight_interval:g}s (long-poll stand-in)",
                 interval=args.tight_interval),
    ]
    started = time.monotonic()
    server = servers.start_zaqar(websocket=True)
    log(f"started zaqar-server pid {server.pid}: http {server.url}, websocket ws://{HOST}:{server.websocket_port}/")
    try:
        results = [run_scenario(sc, server, args, log) for sc in scenarios]
    finally:
        server.stop()
    print(f"\npost-to-delivery latency, one zaqar-server (sqlite); {args.rate:g} msgs/s for "
          f"{args.seconds:g}s "
          "per scenario, fresh queue each")
    print_table(results)
    rat = ratios(results)
    print("\nlatency ratios (same run):")
    for name, r in rat.items():
        print(f"  {name:<27} p50 x{r['p50']:.1f}   p99 x{r['p99']:.1f}")
    log(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args),
                       "results": [dataclasses.asdict(r) for r in results], "ratios": rat},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
