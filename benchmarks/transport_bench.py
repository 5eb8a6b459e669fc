"""HTTP vs websocket (JSON and MessagePack) against one zaqar-server serving both transports.

    python -m benchmarks.transport_bench [--seconds S] [--concurrency N] [--rounds R]
    python -m benchmarks.transport_bench --connections N

Scenarios ``post`` (one message per request) and ``consume`` (claim up to 10,
then delete each claimed message with its claim id), each over four
transports: HTTP with a kept-alive connection, HTTP with a new connection per
request, websocket with JSON text frames and websocket with MessagePack
binary frames. Every client thread has its own connection and its own queue;
a websocket thread sends one request and waits for its reply (replies come
in request order). Each round runs every scenario on every transport back to
back, rotating the transport order, so machine noise hits all of them alike.

Per scenario and transport: msgs/s, p50/p99 request latency, server CPU ms
per message (utime+stime of the server from /proc before and after), bytes
on the wire per message (what the client wrote to and read from its sockets:
HTTP request and response including headers, websocket frames including
frame headers; TCP/IP headers and the one-off websocket opening handshake
excluded), and the load generator's own CPU.

``--ceilings`` (default on; ``--no-ceilings`` to skip) also starts the two
bare-framework servers of ``benchmarks/ceilings.py`` (cheroot + falcon, ws4py)
and runs the same clients against them as four more targets
(``ceiling-http-keepalive``, ``ceiling-http-newconn``, ``ceiling-ws-json``,
``ceiling-ws-msgpack``), each right after its zaqar transport in every round,
measured from /proc the same way; below the table, zaqar / ceiling server CPU
per message for each transport: how much of zaqar's cost is the framework.

``--deflate`` adds ``ws-json-deflate`` and ``ws-msgpack-deflate``: the same
websocket clients negotiating permessage-deflate (RFC 7692) as browsers do,
context takeover both ways (no ceiling: the ws4py ceiling has no deflate).

``--connections N`` is a separate mode: open N websocket connections, report
the handshake rate and the server's RSS, thread and fd growth per connection,
then send one request on every connection at once and time until all N
replies are in (a write burst and a read burst), then close them all. With
``--deflate`` every connection negotiates permessage-deflate and the bursts
go compressed, so the RSS after them shows what deflate state costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import selectors
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from benchmarks import servers
from benchmarks.clients import LIST_LIMIT, Client, HttpClient, WsClient, WsConn, message
from benchmarks.common import Probe, Recorder, fmt, log, percentile, ratio, round_ratios, timed
from benchmarks.http_bench import PROJECT, Target, fill

TRANSPORTS = ("http-keepalive", "http-newconn", "ws-json", "ws-msgpack")
DEFLATE = "-deflate"  # suffix of a websocket transport negotiating permessage-deflate
DEFLATE_TRANSPORTS = ("ws-json" + DEFLATE, "ws-msgpack" + DEFLATE)
CEILING = "ceiling-"  # prefix of the bare-framework targets (benchmarks/ceilings.py)
CEILINGS = tuple(CEILING + t for t in TRANSPORTS)
BACKLOG = 100  # messages on a queue before a "backlog" scenario starts (stats reads, the mixed workload)
EMPTY_WAIT = 0.01  # seconds a waiting consumer sleeps after an empty claim
MONITOR_INTERVAL = 0.05  # seconds between the stats reads of a monitoring client


# ----------------------------------------------------------------------------------------------------------
# What one client thread does: a step is one unit of work, timed; False ends the thread early.

Step = Callable[[Client, Recorder], bool]


def _call(rec: Recorder, call: Callable[[], int]) -> int:
    started = time.perf_counter()
    status = call()
    rec.latencies.append(time.perf_counter() - started)
    return status


def _error(rec: Recorder, what: str, status: int, client: Client) -> None:
    rec.error(f"{what} -> {status}: {str(client.last_reply)[:300]}")


def step_post(client: Client, rec: Recorder) -> bool:
    status = _call(rec, client.post)
    if status == 201:
        rec.requests += 1
        rec.messages += client.batch
    else:
        _error(rec, "post", status, client)
    return True


def step_consume(client: Client, rec: Recorder) -> bool:
    """Claim up to 10, delete each with its claim id; a message is one delete. Ends on an empty queue."""
    started = time.perf_counter()
    status, tokens = client.claim()
    rec.latencies.append(time.perf_counter() - started)
    if status == 204:
        rec.drained = True
        return False
    if status != 201:
        _error(rec, "claim", status, client)
        return True
    rec.requests += 1
    for token in tokens:
        status = _call(rec, lambda token=token: client.delete(token))
        if status == 204:
            rec.requests += 1
            rec.messages += 1
        else:
            _error(rec, "delete", status, client)
    return True


def step_consume_or_wait(client: Client, rec: Recorder) -> bool:
    """step_consume for a consumer sharing its queue with producers: an empty queue means wait, not stop."""
    if not step_consume(client, rec):
        rec.drained = False  # caught up with the producers; the thread goes on
        time.sleep(EMPTY_WAIT)
    return True


def _step_read(name: str, read: Callable[[Client], int], counted: bool) -> Step:
    def step(client: Client, rec: Recorder) -> bool:
        status = _call(rec, lambda: read(client))
        if status == 200:
            rec.requests += 1
            rec.messages += counted  # a read scenario counts requests where others count messages
        else:
            _error(rec, name, status, client)
        return True

    return step


step_stats = _step_read("stats", lambda c: c.stats(), counted=True)
step_list = _step_read("list", lambda c: c.queue_list(), counted=True)
_read_stats = _step_read("stats", lambda c: c.stats(), counted=False)


def step_monitor(client: Client, rec: Recorder) -> bool:
    """A dashboard: queue stats every MONITOR_INTERVAL, not counted as messages."""
    _read_stats(client, rec)
    time.sleep(MONITOR_INTERVAL)
    return True


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One scenario: what its threads do, and the untimed preparation of their queues.

    ``steps``: thread i runs ``steps[i % len(steps)]``. ``threads``: how many (None: the bench's
    ``--concurrency``). ``shared``: every thread on one queue (otherwise one queue per thread).
    ``prepare``: ``create`` (one post creates the queue and warms the connection), ``fill`` (enough
    messages to consume until the deadline at the transport's last post rate), ``backlog``
    (BACKLOG messages), ``queues`` (LIST_LIMIT queues in a project of the run's own, which the
    threads then list). ``batch``: messages per post. A ceiling's targets are never prepared:
    they store nothing and answer every request alike.
    """

    name: str
    steps: tuple[Step, ...]
    prepare: str = "create"
    batch: int = 1
    threads: int | None = None
    shared: bool = False


POST = Scenario("post", (step_post,))
CONSUME = Scenario("consume", (step_consume,), prepare="fill")
SCENARIOS = (POST.name, CONSUME.name)


@dataclasses.dataclass
class Result:
    scenario: str
    transport: str
    seconds: float
    requests: int
    messages: int
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float | None
    gen_cpu_s: float
    bytes_sent: int
    bytes_received: int
    drained: bool = False
    first_error: str = ""
    per_round_ms_per_msg: list[float | None] = dataclasses.field(default_factory=list)
    store_cpu_s: float | None = None  # the database server's (redis-server), when it runs here
    thread_messages: list[int] = dataclasses.field(default_factory=list)  # messages of each client thread

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds

    def _per_msg(self, cpu: float | None) -> float | None:
        return cpu * 1000 / self.messages if cpu is not None and self.messages else None

    @property
    def server_ms_per_msg(self) -> float | None:
        return self._per_msg(self.server_cpu_s)

    @property
    def store_ms_per_msg(self) -> float | None:
        return self._per_msg(self.store_cpu_s)

    @property
    def server_cpu_pct(self) -> float | None:
        return None if self.server_cpu_s is None else 100 * self.server_cpu_s / self.seconds

    @property
    def gen_cpu_pct(self) -> float:
        return 100 * self.gen_cpu_s / self.seconds

    @property
    def tx_per_msg(self) -> float | None:
        return self.bytes_sent / self.messages if self.messages else None

    @property
    def rx_per_msg(self) -> float | None:
        return self.bytes_received / self.messages if self.messages else None

    def as_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out.update(msg_per_s=self.msg_per_s, server_ms_per_msg=self.server_ms_per_msg,
                   store_ms_per_msg=self.store_ms_per_msg, server_cpu_pct=self.server_cpu_pct,
                   gen_cpu_pct=self.gen_cpu_pct, tx_bytes_per_msg=self.tx_per_msg,
                   rx_bytes_per_msg=self.rx_per_msg)
        return out


@dataclasses.dataclass
class Endpoint:
    """Where one transport's requests go: the HTTP target (its ``pid`` is the process measured)
    and, for websocket transports, the websocket port; ``store_pids`` the database server's
    processes whose CPU is charged to the run as well (empty: none)."""

    target: Target
    ws_port: int | None = None
    store_pids: Callable[[], Sequence[int]] = tuple


class Bench:
    def __init__(self, endpoints: dict[str, Endpoint], threads: int, seconds: float) -> None:
        """``endpoints`` by transport: TRANSPORTS on zaqar, CEILINGS (optional) on the ceiling servers."""
        self.endpoints, self.threads, self.seconds = endpoints, threads, seconds
        self.transports = tuple(endpoints)
        self.run_id = uuid.uuid4().hex[:8]
        self.epoch = 0  # bumped per run, so every run gets fresh queues
        self.post_rate: dict[str, float] = {}  # last post msgs/s per transport, sizes the consume prefill

    def client(self, transport: str, queue: str, client_id: str, thread: int, batch: int = 1,
               project: str = PROJECT) -> Client:
        """A connected client of ``transport`` for one thread and ``queue``."""
        endpoint, kind = self.endpoints[transport], transport.removeprefix(CEILING)
        if kind.startswith("http-"):
            return HttpClient(endpoint.target, queue, client_id, thread, kind == "http-newconn", batch=batch,
                              project=project)
        assert endpoint.ws_port is not None
        return WsClient(endpoint.target, endpoint.ws_port, queue, client_id, thread,
                        kind.startswith("ws-msgpack"), batch=batch, project=project,
                        deflate=kind.endswith(DEFLATE))

    def _prepare(self, scenario: Scenario, transport: str, queue: str, client_id: str) -> str:
        """Untimed: the messages or queues ``scenario`` needs on ``queue``; returns the project to use."""
        target, threads = self.endpoints[transport].target, scenario.threads or self.threads
        if transport.startswith(CEILING):
            return PROJECT
        if scenario.prepare == "fill":
            # NOTE: consuming (claim 10 + deletes) runs ~1.6x faster than posting one by one, and
            # store caches and relaxed consume commits can widen that: fill 3x the post rate.
            rate = max(1500.0, self.post_rate.get(transport, 0.0))
            fill(target, queue, int(rate * self.seconds * 3 / threads) + 50, client_id)
        elif scenario.prepare == "backlog":
            fill(target, queue, BACKLOG, client_id)
        elif scenario.prepare == "queues":
            project = f"{PROJECT}-{self.run_id}-{self.epoch}"
            for k in range(LIST_LIMIT):
                fill(target, f"{queue}-{k}", 1, client_id, project=project)
            return project
        return PROJECT

    def _setup(self, scenario: Scenario, transport: str, thread: int,
               shared: tuple[str, str] | None) -> Client:
        """Untimed: prepare this thread's queue (unless ``shared``: (queue, project) prepared once),
        connect."""
        client_id = str(uuid.uuid4())
        if shared is None:
            queue = f"tb-{self.run_id}-{self.epoch}-{scenario.name}-{transport}-{thread}"
            project = self._prepare(scenario, transport, queue, client_id)
        else:
            queue, project = shared
        client = self.client(transport, queue, client_id, thread, scenario.batch, project)
        if scenario.prepare == "create":
            status = client.post()  # creates the queue, warms the connection
            if status != 201:
                raise RuntimeError(f"setup post on {transport}: {status} {str(client.last_reply)[:300]}")
        return client

    def _setup_all(self, scenario: Scenario, transport: str) -> list[Client]:
        """Every thread's client, set up in parallel (pre-filling is the slow part)."""
        threads = scenario.threads or self.threads
        shared = None
        if scenario.shared or scenario.prepare == "queues":
            queue = f"tb-{self.run_id}-{self.epoch}-{scenario.name}-{transport}"
            shared = queue, self._prepare(scenario, transport, queue, str(uuid.uuid4()))
        clients: list[Client | None] = [None] * threads
        errors: list[BaseException] = []

        def setup(i: int) -> None:
            try:
                clients[i] = self._setup(scenario, transport, i, shared)
            except BaseException as exc:
                errors.append(exc)

        setups = [threading.Thread(target=setup, args=(i,)) for i in range(threads)]
        for t in setups:
            t.start()
        for t in setups:
            t.join()
        ready = [c for c in clients if c is not None]
        if errors:
            for c in ready:
                c.close()
            raise RuntimeError(f"{scenario.name}/{transport} setup failed: {errors[0]!r}") from errors[0]
        return ready

    def run(self, scenario: Scenario, transport: str) -> Result:
        """One timed run of ``scenario`` over ``transport``, on fresh queues."""
        self.epoch += 1
        endpoint = self.endpoints[transport]
        ready = self._setup_all(scenario, transport)
        sent0 = sum(c.sent for c in ready)
        received0 = sum(c.received for c in ready)
        steps = scenario.steps
        try:
            m = timed(lambda i, rec: steps[i % len(steps)](ready[i], rec), len(ready), self.seconds,
                      Probe(endpoint.target.pid, endpoint.store_pids), Recorder)
        finally:
            for c in ready:
                c.close()
        if m.failures:
            raise RuntimeError(f"{scenario.name}/{transport} failed: {m.failures[0]}")
        latencies = sorted(lat for rec in m.recs for lat in rec.latencies)
        result = Result(
            scenario=scenario.name, transport=transport, seconds=m.seconds,
            requests=sum(r.requests for r in m.recs), messages=sum(r.messages for r in m.recs),
            errors=sum(r.errors for r in m.recs),
            p50_ms=percentile(latencies, 0.50) * 1000, p99_ms=percentile(latencies, 0.99) * 1000,
            server_cpu_s=m.server_cpu, gen_cpu_s=m.own_cpu, bytes_sent=sum(c.sent for c in ready) - sent0,
            bytes_received=sum(c.received for c in ready) - received0, drained=any(r.drained for r in m.recs),
            first_error=next((r.first_error for r in m.recs if r.first_error), ""), store_cpu_s=m.db_cpu,
            thread_messages=[r.messages for r in m.recs],
        )
        if scenario.steps == (step_post,) and scenario.batch == 1:
            self.post_rate[transport] = result.msg_per_s
        return result


def _total(values: Sequence[float | None]) -> float | None:
    return None if None in values else sum(v for v in values if v is not None)


def pool_rounds(rounds: Sequence[Result]) -> Result:
    """Counts, bytes and CPU summed; p50/p99 the median round's."""
    first = rounds[0]
    return Result(
        scenario=first.scenario, transport=first.transport, seconds=sum(r.seconds for r in rounds),
        requests=sum(r.requests for r in rounds), messages=sum(r.messages for r in rounds),
        errors=sum(r.errors for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        server_cpu_s=_total([r.server_cpu_s for r in rounds]), gen_cpu_s=sum(r.gen_cpu_s for r in rounds),
        store_cpu_s=_total([r.store_cpu_s for r in rounds]),
        bytes_sent=sum(r.bytes_sent for r in rounds), bytes_received=sum(r.bytes_received for r in rounds),
        drained=any(r.drained for r in rounds),
        first_error=next((r.first_error for r in rounds if r.first_error), ""),
        per_round_ms_per_msg=[r.server_ms_per_msg for r in rounds],
    )


def run_order(transports: Sequence[str]) -> tuple[str, ...]:
    """Each ceiling and deflate twin right after its zaqar transport, so a group's runs are seconds apart
    (their ratios are taken round by round)."""
    bases = [t for t in transports if not t.startswith(CEILING) and not t.endswith(DEFLATE)]
    grouped = [x for t in bases for x in (t, CEILING + t, t + DEFLATE) if x in transports]
    return tuple(grouped + [t for t in transports if t not in grouped])


def round_order(transports: Sequence[str], rnd: int, rounds: int) -> tuple[str, ...]:
    """The order of round ``rnd``: run_order, rotated so that over the rounds every transport runs in
    every part of the order (pairs stay adjacent)."""
    base = run_order(transports)
    step = max(1, len(base) // rounds)
    shift = (rnd * step) % len(base)
    return base[shift:] + base[:shift]


def run_rounds(bench: Bench, rounds: int, log: Callable[[str], None]) -> list[Result]:
    transports = bench.transports
    runs: dict[tuple[str, str], list[Result]] = {(s, t): [] for s in SCENARIOS for t in transports}
    for rnd in range(rounds):
        for scenario in (POST, CONSUME):
            for transport in round_order(transports, rnd, rounds):
                log(f"  round {rnd + 1}/{rounds}: {scenario.name} over {transport}")
                runs[scenario.name, transport].append(bench.run(scenario, transport))
    return [pool_rounds(runs[s, t]) for s in SCENARIOS for t in transports]


# ----------------------------------------------------------------------------------------------------------
# Reporting.


def print_table(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    width = max([15, *(len(r.transport) for r in results)])
    header = (f"{'scenario':<8} {'transport':<{width}} {'msgs/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'srv ms/msg':>10} {'srv CPU%':>8} {'gen CPU%':>8} {'tx B/msg':>8} {'rx B/msg':>8} "
              f"{'errors':>6}")
    out(header)
    out("-" * len(header))
    for r in results:
        notes = " (queue drained)" if r.drained else ""
        out(f"{r.scenario:<8} {r.transport:<{width}} {r.msg_per_s:>7.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{fmt(r.server_ms_per_msg, '.3f'):>10} {fmt(r.server_cpu_pct, '.0f'):>8} {r.gen_cpu_pct:>8.0f} "
            f"{fmt(r.tx_per_msg, '.0f'):>8} {fmt(r.rx_per_msg, '.0f'):>8} {r.errors:>6}{notes}")
    errors = [r for r in results if r.first_error]
    for r in errors:
        out(f"  first error in {r.scenario}/{r.transport}: {r.first_error}")


def print_ratios(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    by = {(r.scenario, r.transport): r for r in results}
    pairs = [
        ("ws-json / http-keepalive", "ws-json", "http-keepalive"),
        ("ws-json / http-newconn", "ws-json", "http-newconn"),
        ("ws-msgpack / http-keepalive", "ws-msgpack", "http-keepalive"),
        ("ws-msgpack / http-newconn", "ws-msgpack", "http-newconn"),
        ("ws-msgpack / ws-json", "ws-msgpack", "ws-json"),
        ("ws-json-deflate / ws-json", "ws-json-deflate", "ws-json"),
        ("ws-msgpack-deflate / ws-msgpack", "ws-msgpack-deflate", "ws-msgpack"),
        ("ws-msgpack-deflate / http-keepalive", "ws-msgpack-deflate", "http-keepalive"),
        ("http-newconn / http-keepalive", "http-newconn", "http-keepalive"),
    ]
    several = any(len(r.per_round_ms_per_msg) > 1 for r in results)
    out("")
    out("ratios (same run): server CPU/msg pooled" + (" [median per-round ratio, min-max]" if several else "")
        + " | msgs/s | wire bytes/msg")
    for scenario in SCENARIOS:
        for label, a, b in pairs:
            if (scenario, a) not in by or (scenario, b) not in by:
                continue
            ra, rb = by[scenario, a], by[scenario, b]
            cpu = ratio(ra.server_ms_per_msg, rb.server_ms_per_msg)
            if several:
                cpu += " " + round_ratios(ra.per_round_ms_per_msg, rb.per_round_ms_per_msg)
            wire_a = (ra.bytes_sent + ra.bytes_received) / ra.messages if ra.messages else None
            wire_b = (rb.bytes_sent + rb.bytes_received) / rb.messages if rb.messages else None
            out(f"  {scenario:<8} {label:<36} CPU/msg {cpu:<24} "
                f"| msgs/s {ratio(ra.msg_per_s, rb.msg_per_s):>6} | bytes {ratio(wire_a, wire_b):>6}")
    print_ceiling_ratios(results, out)
    if several:
        width = max(len(r.transport) for r in results)
        out("")
        out("server CPU ms/msg per round:")
        for r in results:
            rounds = " ".join(fmt(v, ".3f") for v in r.per_round_ms_per_msg)
            out(f"  {r.scenario:<8} {r.transport:<{width}} {rounds}")


def print_ceiling_ratios(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    """zaqar / bare framework per transport: the CPU ratio, and the CPU zaqar adds per message."""
    by = {(r.scenario, r.transport): r for r in results}
    pairs = [(s, t) for s in SCENARIOS for t in TRANSPORTS if (s, t) in by and (s, CEILING + t) in by]
    if not pairs:
        return
    several = any(len(r.per_round_ms_per_msg) > 1 for r in results)
    out("")
    out("zaqar / ceiling (bare cheroot+falcon, bare ws4py; same run): server CPU/msg pooled"
        + (" [median per-round ratio, min-max]" if several else "")
        + ", zaqar's own CPU per message on top of the framework | msgs/s")
    for scenario, transport in pairs:
        zq, ceiling = by[scenario, transport], by[scenario, CEILING + transport]
        cpu = ratio(zq.server_ms_per_msg, ceiling.server_ms_per_msg)
        if several:
            cpu += " " + round_ratios(zq.per_round_ms_per_msg, ceiling.per_round_ms_per_msg)
        extra = ("n/a" if zq.server_ms_per_msg is None or ceiling.server_ms_per_msg is None
                 else f"{(zq.server_ms_per_msg - ceiling.server_ms_per_msg) * 1000:+.0f} us")
        out(f"  {scenario:<8} {transport:<15} CPU/msg {cpu:<24} {extra:>8} "
            f"| msgs/s {ratio(zq.msg_per_s, ceiling.msg_per_s):>6}")


# ----------------------------------------------------------------------------------------------------------
# --connections: many idle websocket connections, then one request on each at once.


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < needed:
            raise SystemExit(f"need {needed} file descriptors, the hard limit is {hard}")


def open_many(host: str, port: int, count: int, threads: int,
              deflate: bool = False) -> tuple[list[WsConn], float, list[float]]:
    """``count`` websocket connections opened by ``threads`` threads: (connections, seconds, latencies)."""
    conns: list[WsConn] = []
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[BaseException] = []
    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def opener(n: int) -> None:
        mine, lats = [], []
        try:
            for _ in range(n):
                started = time.perf_counter()
                mine.append(WsConn(host, port, deflate=deflate))
                lats.append(time.perf_counter() - started)
        except BaseException as exc:
            failures.append(exc)
        with lock:
            conns.extend(mine)
            latencies.extend(lats)

    pool = [threading.Thread(target=opener, args=(n,)) for n in shares]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        for c in conns:
            c.close()
        raise RuntimeError(f"opened {len(conns)} of {count} connections, then: {failures[0]!r}") \
            from failures[0]
    return conns, elapsed, sorted(latencies)


@dataclasses.dataclass
class Burst:
    action: str
    replies: int
    errors: int
    seconds: float
    first_ms: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    first_error: str = ""


def burst(conns: Sequence[WsConn], frames: Sequence[bytes], action: str, pid: int) -> Burst:
    """Send ``frames[i]`` on ``conns[i]`` for all i, then collect one reply from each (client-side epoll)."""
    selector = selectors.DefaultSelector()
    cpu0 = servers.cpu_seconds(pid)
    started = time.perf_counter()
    for conn, frame in zip(conns, frames, strict=True):
        conn.send(frame)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    times: list[float] = []
    errors, first_error = 0, ""
    pending = len(conns)
    deadline = started + 120
    while pending and time.perf_counter() < deadline:
        for key, _ in selector.select(timeout=1.0):
            conn = key.data
            opcode, payload = conn.read()  # the reply is small: once readable, it is (nearly) all there
            times.append(time.perf_counter() - started)
            selector.unregister(conn.sock)
            pending -= 1
            doc = msgpack.unpackb(payload, raw=False) if opcode == 0x2 else json.loads(payload)
            status = doc.get("headers", {}).get("status") if isinstance(doc, dict) else None
            echoed = doc.get("request", {}).get("action") if isinstance(doc, dict) else None
            if status not in (200, 201) or echoed != action:
                errors += 1
                first_error = first_error or f"{action} -> {str(doc)[:300]}"
    elapsed = time.perf_counter() - started
    cpu = servers.cpu_seconds(pid) - cpu0
    selector.close()
    if pending:
        errors += pending
        first_error = first_error or f"{pending} of {len(conns)} replies missing after 120 s"
    times.sort()
    return Burst(action, len(times), errors, elapsed, (times[0] if times else float("nan")) * 1000,
                 percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000, cpu, first_error)


def connections_mode(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, object]:
    raise_fd_limit(2 * args.connections + 256)  # the server inherits it, and holds a socket per connection
    server = servers.start_zaqar(args.server_threads, websocket=True)
    assert server.websocket_port is not None
    log(f"started zaqar-server pid {server.pid}: http {server.url}, "
        f"websocket ws://127.0.0.1:{server.websocket_port}/")
    try:
        report = measure_connections("127.0.0.1", server.websocket_port, server.pid, args.connections,
                                     args.concurrency, 2 * args.server_threads, log, deflate=args.deflate)
    finally:
        server.stop()
    report["server_threads"] = args.server_threads
    print_connections(report)
    return report


def measure_connections(host: str, port: int, pid: int, count: int, opener_threads: int, warm: int,
                        log: Callable[[str], None], deflate: bool = False) -> dict[str, Any]:
    """Open ``count`` websocket connections to the server ``pid`` listening on ``port``, then burst.

    Before the baseline, ``warm`` connections each post once and close, so the server has created
    its handshake and worker threads. The report holds the server's RSS, threads and fds before,
    with all open (idle), after one message_post and one message_list on every connection at once,
    and after closing; the handshake rate and each burst's timing and server CPU. ``deflate``: every
    connection negotiates permessage-deflate (the server's codecs exist once the bursts ran).
    """
    queue = f"tb-{uuid.uuid4().hex[:8]}-burst"
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    post = json.dumps({"action": "message_post", "headers": headers,
                       "body": {"queue_name": queue, "messages": [message(0)]}}).encode()
    listing = json.dumps({"action": "message_list", "headers": headers,
                          "body": {"queue_name": queue, "limit": 10, "echo": True}}).encode()
    warming, _, _ = open_many(host, port, warm, opener_threads, deflate)
    burst(warming, [c.data_frame(post, False) for c in warming], "message_post", pid)
    for c in warming:
        c.close()
    time.sleep(1.0)
    before, fds_before, cpu0 = servers.proc_status(pid), servers.open_fds(pid), servers.cpu_seconds(pid)
    log(f"opening {count} websocket connections with {opener_threads} threads")
    conns, opening_s, handshake_lat = open_many(host, port, count, opener_threads, deflate)
    if deflate and not all(c.compressed for c in conns):
        raise RuntimeError("the server did not accept permessage-deflate")
    handshake_cpu = servers.cpu_seconds(pid) - cpu0
    time.sleep(1.0)  # the last handshakes are registered with the I/O loop
    opened, fds_open = servers.proc_status(pid), servers.open_fds(pid)
    log(f"one message_post on each of the {count} connections at once")
    posts = burst(conns, [c.data_frame(post, False) for c in conns], "message_post", pid)
    log(f"one message_list on each of the {count} connections at once")
    lists = burst(conns, [c.data_frame(listing, False) for c in conns], "message_list", pid)
    after_bursts = servers.proc_status(pid)
    started = time.perf_counter()
    for c in conns:
        c.close()
    closing_s = time.perf_counter() - started
    time.sleep(1.5)  # the I/O loop drops them
    closed, fds_closed = servers.proc_status(pid), servers.open_fds(pid)
    return {
        "connections": count, "opener_threads": opener_threads, "deflate": deflate,
        "open_seconds": opening_s, "handshakes_per_s": count / opening_s,
        "handshake_p50_ms": percentile(handshake_lat, 0.5) * 1000,
        "handshake_p99_ms": percentile(handshake_lat, 0.99) * 1000,
        "server_cpu_ms_per_handshake": handshake_cpu * 1000 / count,
        "rss_kb": {"before": before["VmRSS"], "open": opened["VmRSS"], "after_bursts": after_bursts["VmRSS"],
                   "closed": closed["VmRSS"]},
        "rss_kb_per_connection": (opened["VmRSS"] - before["VmRSS"]) / count,
        "rss_kb_per_used_connection": (after_bursts["VmRSS"] - before["VmRSS"]) / count,
        "threads": {"before": before["Threads"], "open": opened["Threads"],
                    "after_bursts": after_bursts["Threads"], "closed": closed["Threads"]},
        "fds": {"before": fds_before, "open": fds_open, "closed": fds_closed},
        "bursts": [dataclasses.asdict(b) for b in (posts, lists)],
        "close_seconds": closing_s,
    }


def print_connections(rep: dict[str, Any], out: Callable[[str], None] = print) -> None:
    n = rep["connections"]
    rss, threads, fds = rep["rss_kb"], rep["threads"], rep["fds"]
    deflate = ", permessage-deflate negotiated on each" if rep.get("deflate") else ""
    out(f"\n{n} websocket connections to one zaqar-server ({rep['server_threads']} workers){deflate}; "
        f"opened by {rep['opener_threads']} client threads")
    out(f"  handshakes       {rep['handshakes_per_s']:.0f} connections/s "
        f"({n} in {rep['open_seconds']:.2f} s); "
        f"connect+handshake p50 {rep['handshake_p50_ms']:.2f} ms, p99 {rep['handshake_p99_ms']:.2f} ms; "
        f"server CPU {rep['server_cpu_ms_per_handshake']:.3f} ms/handshake")
    out(f"  server RSS       {rss['before'] / 1024:.1f} MiB before -> {rss['open'] / 1024:.1f} MiB "
        f"with {n} open (+{rep['rss_kb_per_connection']:.1f} KiB/connection) -> "
        f"{rss['after_bursts'] / 1024:.1f} MiB after the bursts (+{rep['rss_kb_per_used_connection']:.1f} "
        "KiB/connection) -> "
        f"{rss['closed'] / 1024:.1f} MiB after closing")
    out(f"  server threads   {threads['before']} before, {threads['open']} with {n} open, "
        f"{threads['after_bursts']} after the bursts, {threads['closed']} after closing")
    out(f"  server fds       {fds['before']} before, {fds['open']} with {n} open, "
        f"{fds['closed']} after closing")
    for b in rep["bursts"]:
        out(f"  burst {b['action']:<13} {b['replies']}/{n} replies in {b['seconds'] * 1000:.0f} ms "
            f"({b['replies'] / b['seconds']:.0f} replies/s); reply after first {b['first_ms']:.1f} ms, "
            f"p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms; server CPU "
            f"{b['server_cpu_s'] * 1000 / max(1, b['replies']):.3f} ms/request; errors {b['errors']}")
        if b["first_error"]:
            out(f"    first error: {b['first_error']}")
    out(f"  closing          {n} connections closed by the client in {rep['close_seconds'] * 1000:.0f} ms")


# ----------------------------------------------------------------------------------------------------------
# Entry points.


def zaqar_endpoints(target: Target, ws_port: int, store_pids: Callable[[], Sequence[int]] = tuple,
                    deflate: bool = False) -> dict[str, Endpoint]:
    """TRANSPORTS (and with ``deflate`` DEFLATE_TRANSPORTS) on one zaqar-server: HTTP at ``target``,
    websocket on ``ws_port`` of the same host."""
    transports = TRANSPORTS + (DEFLATE_TRANSPORTS if deflate else ())
    return {t: Endpoint(target, None if t.startswith("http-") else ws_port, store_pids) for t in transports}


def start_ceilings(threads: int, started: list[servers.ServerProcess],
                   log: Callable[[str], None]) -> dict[str, Endpoint]:
    """Both ceiling servers (appended to ``started``, for the caller to stop) and their CEILINGS."""
    http = servers.start_ceiling("http", threads)
    started.append(http)
    ws = servers.start_ceiling("websocket", threads)
    started.append(ws)
    log(f"started ceilings: cheroot+falcon pid {http.pid} on {http.url}, "
        f"ws4py pid {ws.pid} on ws://127.0.0.1:{ws.port}/")
    endpoints: dict[str, Endpoint] = {}
    for t in TRANSPORTS:
        ceiling = http if t.startswith("http-") else ws
        target = Target("127.0.0.1", ceiling.port, ceiling.pid)
        endpoints[CEILING + t] = Endpoint(target, ceiling.websocket_port)
    return endpoints


def scenarios_mode(args: argparse.Namespace, log: Callable[[str], None]) -> list[Result]:
    started: list[servers.ServerProcess] = []
    try:
        server = servers.start_zaqar(args.server_threads, websocket=True)
        started.append(server)
        assert server.websocket_port is not None
        log(f"started zaqar-server pid {server.pid}: http {server.url}, "
            f"websocket ws://127.0.0.1:{server.websocket_port}/ ({args.server_threads} threads / workers)")
        endpoints = zaqar_endpoints(Target("127.0.0.1", server.port, server.pid), server.websocket_port,
                                    deflate=args.deflate)
        if args.ceilings:
            endpoints.update(start_ceilings(args.server_threads, started, log))
        bench = Bench(endpoints, args.concurrency, args.seconds)
        results = run_rounds(bench, args.rounds, log)
    finally:
        for s in started:
            s.stop()
    rounds = f" x {args.rounds} rounds (pooled)" if args.rounds > 1 else ""
    print(f"\nzaqar-server (cheroot {args.server_threads} threads + websocket {args.server_threads} workers, "
          f"sqlite); {args.concurrency} client threads, {args.seconds:g}s per scenario{rounds}")
    if args.ceilings:
        print(f"ceiling-*: the same clients against bare servers doing no work (benchmarks/ceilings.py): "
              f"cheroot {args.server_threads} threads + falcon, ws4py + {args.server_threads} workers")
    print_table(results)
    print_ratios(results)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transport_bench",
                                     description="Compare HTTP and websocket (JSON, MessagePack) on one "
                                                 "server.")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="duration of each scenario run (default 2)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="client threads (default 4); with --connections, threads opening connections")
    parser.add_argument("--rounds", type=int, default=4,
                        help="repeat every scenario on every transport this many times, interleaved, and "
                             "pool the runs (default 4: each transport once in every position of the order)")
    parser.add_argument("--server-threads", type=int, default=servers.DEFAULT_THREADS,
                        help="HTTP threads and websocket workers of the server "
                        "(default 4, as zaqar-server on sqlite and redis)")
    parser.add_argument("--connections", type=int, default=0, metavar="N",
                        help="instead of the scenarios: open N websocket connections, measure handshake "
                             "rate, server memory per connection and the time to answer one request on each")
    parser.add_argument("--ceilings", action=argparse.BooleanOptionalAction, default=True,
                        help="also run every scenario against the bare-framework servers of "
                             "benchmarks/ceilings.py, interleaved, and print zaqar / ceiling (default on)")
    parser.add_argument("--deflate", action="store_true",
                        help="also run ws-json-deflate and ws-msgpack-deflate (permessage-deflate "
                             "negotiated); with --connections, negotiate it on every connection")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0 or args.rounds < 1 or args.connections < 0:
        parser.error("--concurrency and --rounds must be >= 1, --seconds > 0, --connections >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results: object
    if args.connections:
        results = connections_mode(args, log)
    else:
        results = [r.as_dict() for r in scenarios_mode(args, log)]
    log(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "concurrency": args.concurrency, "rounds": args.rounds,
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
