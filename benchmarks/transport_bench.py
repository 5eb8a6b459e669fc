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

``--connections N`` is a separate mode: open N websocket connections, report
the handshake rate and the server's RSS, thread and fd growth per connection,
then send one request on every connection at once and time until all N
replies are in (a write burst and a read burst), then close them all.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import resource
import selectors
import socket
import statistics
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from benchmarks import servers
from benchmarks.http_bench import Conn, Target, build_request, fill, percentile

PROJECT = "bench-project"
TTL = 3600
CLAIM_LIMIT = 10
TRANSPORTS = ("http-keepalive", "http-newconn", "ws-json", "ws-msgpack")
CEILING = "ceiling-"  # prefix of the bare-framework targets (benchmarks/ceilings.py)
CEILINGS = tuple(CEILING + t for t in TRANSPORTS)
SCENARIOS = ("post", "consume")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def message(thread: int) -> dict[str, Any]:
    """The message every scenario posts (~100 bytes of JSON, as in http_bench)."""
    return {"ttl": TTL, "body": {"event": "bench", "thread": thread, "seq": 0, "data": "x" * 64}}


# ----------------------------------------------------------------------------------------------------------
# Clients. Each has post() -> status, claim() -> (status, delete tokens), delete(token) -> status, and
# counts the bytes it wrote (``sent``) and read (``received``).


class CountingConn(Conn):
    """http_bench's raw HTTP/1.1 connection, counting bytes."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.sent = 0
        self.received = 0

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.sent += len(data)
        return super().request(data)

    def _recv(self) -> bytes:
        chunk = super()._recv()
        self.received += len(chunk)
        return chunk


class HttpClient:
    def __init__(self, target: Target, queue: str, client_id: str, thread: int, new_connection: bool) -> None:
        self.conn = CountingConn(target.host, target.port)
        self.new_connection = new_connection
        host = target.hostport
        body = json.dumps({"messages": [message(thread)]}).encode()
        self.post_request = build_request("POST", f"/v2/queues/{queue}/messages", host, client_id, body,
                                          close=new_connection)
        self.claim_request = build_request("POST", f"/v2/queues/{queue}/claims?limit={CLAIM_LIMIT}", host,
                                           client_id, b'{"ttl": 300, "grace": 60}', close=new_connection)
        head = build_request("DELETE", "/", host, client_id, close=new_connection)
        self.delete_rest = head[head.index(b"\r\n"):]  # everything but the request line
        self.last_reply = b""

    @property
    def sent(self) -> int:
        return self.conn.sent

    @property
    def received(self) -> int:
        return self.conn.received

    def _request(self, data: bytes) -> tuple[int, bytes]:
        try:
            status, body = self.conn.request(data)
        finally:
            if self.new_connection:
                self.conn.close()
        self.last_reply = body
        return status, body

    def post(self) -> int:
        return self._request(self.post_request)[0]

    def claim(self) -> tuple[int, list[Any]]:
        status, body = self._request(self.claim_request)
        if status != 201:
            return status, []
        return status, [m["href"] for m in json.loads(body)["messages"]]  # href carries ?claim_id=

    def delete(self, href: Any) -> int:
        return self._request(b"DELETE " + href.encode() + b" HTTP/1.1" + self.delete_rest)[0]

    def close(self) -> None:
        self.conn.close()


class WsError(Exception):
    pass


def ws_mask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


class WsConn:
    """A minimal RFC 6455 client: handshake, masked single frames out, unfragmented frames in."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.received = 0
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                          b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WsError(f"connection closed during the handshake: {data!r}")
            data += chunk
        head, _, self.buf = data.partition(b"\r\n\r\n")
        expected = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        if not head.startswith(b"HTTP/1.1 101 ") or b"Sec-WebSocket-Accept: " + expected not in head:
            raise WsError(f"handshake refused: {head!r}")

    @staticmethod
    def frame(payload: bytes, binary: bool, opcode: int = 0) -> bytes:
        """A masked, final frame (text, binary, or ``opcode``); build once and send as often as needed."""
        n = len(payload)
        first = bytes([0x80 | (opcode or (0x2 if binary else 0x1))])
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = b"\xfe" + struct.pack(">H", n)
        else:
            length = b"\xff" + struct.pack(">Q", n)
        key = os.urandom(4)
        return first + length + key + ws_mask(key, payload)

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)
        self.sent += len(frame)

    def read(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame."""
        buf = self.buf
        while True:
            if len(buf) >= 2:
                size, pos = buf[1] & 0x7F, 2
                if size == 126 and len(buf) >= 4:
                    size, pos = struct.unpack_from(">H", buf, 2)[0], 4
                elif size == 127 and len(buf) >= 10:
                    size, pos = struct.unpack_from(">Q", buf, 2)[0], 10
                if size < 126 or pos > 2:
                    if buf[1] & 0x80:
                        raise WsError("server sent a masked frame")
                    if len(buf) >= pos + size:
                        if not buf[0] & 0x80:
                            raise WsError("server sent a fragmented message")
                        self.buf = buf[pos + size:]
                        return buf[0] & 0x0F, buf[pos:pos + size]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise WsError("connection closed by the server")
            self.received += len(chunk)
            buf += chunk

    def roundtrip(self, frame: bytes) -> bytes:
        self.send(frame)
        opcode, payload = self.read()
        if opcode == 0x8:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            raise WsError(f"server closed the connection: {code} {payload[2:]!r}")
        if opcode not in (0x1, 0x2):
            raise WsError(f"unexpected opcode {opcode}")
        return payload

    def close(self) -> None:
        try:
            self.send(self.frame(struct.pack(">H", 1000), binary=False, opcode=0x8))
        except OSError:
            pass
        self.sock.close()


class WsClient:
    def __init__(self, target: Target, ws_port: int, queue: str, client_id: str, thread: int,
                 binary: bool) -> None:
        self.ws = WsConn(target.host, ws_port)
        self.binary = binary
        self.headers = {"Client-ID": client_id, "X-Project-ID": PROJECT}
        self.queue = queue
        self.post_frame = self._frame("message_post", {"queue_name": queue, "messages": [message(thread)]})
        self.claim_frame = self._frame("claim_create", {"queue_name": queue, "limit": CLAIM_LIMIT,
                                                        "ttl": 300, "grace": 60})
        self.last_reply: Any = None

    def _encode(self, doc: Any) -> bytes:
        return msgpack.packb(doc, use_bin_type=True) if self.binary else json.dumps(doc).encode()

    def _frame(self, action: str, body: dict[str, Any]) -> bytes:
        return WsConn.frame(self._encode({"action": action, "headers": self.headers, "body": body}),
                            self.binary)

    @property
    def sent(self) -> int:
        return self.ws.sent

    @property
    def received(self) -> int:
        return self.ws.received

    def _call(self, frame: bytes, action: str) -> tuple[int, Any]:
        payload = self.ws.roundtrip(frame)
        doc = msgpack.unpackb(payload, raw=False) if self.binary else json.loads(payload)
        self.last_reply = doc
        echoed = doc.get("request", {}).get("action") if isinstance(doc, dict) else None
        if echoed != action:  # the protocol answers in request order: anything else is a server bug
            raise WsError(f"reply to {action} echoes {echoed!r}: {str(doc)[:300]}")
        return doc["headers"]["status"], doc["body"]

    def post(self) -> int:
        return self._call(self.post_frame, "message_post")[0]

    def claim(self) -> tuple[int, list[Any]]:
        status, body = self._call(self.claim_frame, "claim_create")
        if status != 201:
            return status, []
        return status, [(m["id"], body["claim_id"]) for m in body["messages"]]

    def delete(self, token: Any) -> int:
        message_id, claim_id = token
        frame = self._frame("message_delete", {"queue_name": self.queue, "message_id": message_id,
                                               "claim_id": claim_id})
        return self._call(frame, "message_delete")[0]

    def close(self) -> None:
        self.ws.close()


Client = HttpClient | WsClient


# ----------------------------------------------------------------------------------------------------------
# Running one scenario on one transport.


@dataclasses.dataclass
class Recorder:
    requests: int = 0
    messages: int = 0
    errors: int = 0
    drained: bool = False
    first_error: str = ""
    latencies: list[float] = dataclasses.field(default_factory=list)

    def error(self, what: str, status: int, client: Client) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{what} -> {status}: {str(client.last_reply)[:300]}"


def step_post(client: Client, rec: Recorder) -> bool:
    started = time.perf_counter()
    status = client.post()
    rec.latencies.append(time.perf_counter() - started)
    if status == 201:
        rec.requests += 1
        rec.messages += 1
    else:
        rec.error("post", status, client)
    return True


def step_consume(client: Client, rec: Recorder) -> bool:
    started = time.perf_counter()
    status, tokens = client.claim()
    rec.latencies.append(time.perf_counter() - started)
    if status == 204:
        rec.drained = True
        return False
    if status != 201:
        rec.error("claim", status, client)
        return True
    rec.requests += 1
    for token in tokens:
        started = time.perf_counter()
        status = client.delete(token)
        rec.latencies.append(time.perf_counter() - started)
        if status == 204:
            rec.requests += 1
            rec.messages += 1
        else:
            rec.error("delete", status, client)
    return True


STEPS: dict[str, Callable[[Client, Recorder], bool]] = {"post": step_post, "consume": step_consume}


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
    server_cpu_s: float
    gen_cpu_s: float
    bytes_sent: int
    bytes_received: int
    drained: bool = False
    first_error: str = ""
    per_round_ms_per_msg: list[float | None] = dataclasses.field(default_factory=list)

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def server_ms_per_msg(self) -> float | None:
        return self.server_cpu_s * 1000 / self.messages if self.messages else None

    @property
    def server_cpu_pct(self) -> float:
        return 100 * self.server_cpu_s / self.seconds

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
                   server_cpu_pct=self.server_cpu_pct, gen_cpu_pct=self.gen_cpu_pct,
                   tx_bytes_per_msg=self.tx_per_msg, rx_bytes_per_msg=self.rx_per_msg)
        return out


@dataclasses.dataclass
class Endpoint:
    """Where one transport's requests go: the HTTP target (its ``pid`` is the process measured)
    and, for websocket transports, the websocket port."""

    target: Target
    ws_port: int | None = None


class Bench:
    def __init__(self, endpoints: dict[str, Endpoint], threads: int, seconds: float) -> None:
        """``endpoints`` by transport: TRANSPORTS on zaqar, CEILINGS (optional) on the ceiling servers."""
        self.endpoints, self.threads, self.seconds = endpoints, threads, seconds
        self.transports = tuple(endpoints)
        self.run_id = uuid.uuid4().hex[:8]
        self.epoch = 0  # bumped per run, so every run gets fresh queues
        self.post_rate: dict[str, float] = {}  # last post msgs/s per transport, sizes the consume prefill

    def _client(self, transport: str, queue: str, client_id: str, thread: int) -> Client:
        endpoint, kind = self.endpoints[transport], transport.removeprefix(CEILING)
        if kind.startswith("http-"):
            return HttpClient(endpoint.target, queue, client_id, thread, kind == "http-newconn")
        assert endpoint.ws_port is not None
        return WsClient(endpoint.target, endpoint.ws_port, queue, client_id, thread, kind == "ws-msgpack")

    def _setup(self, scenario: str, transport: str, thread: int) -> Client:
        """Untimed: connect, create (post) or pre-fill (consume) this thread's queue.

        A ceiling never runs dry (it answers every claim with 10 messages), so it is not pre-filled."""
        queue = f"tb-{self.run_id}-{self.epoch}-{scenario}-{transport}-{thread}"
        client_id = str(uuid.uuid4())
        if scenario == "consume" and not transport.startswith(CEILING):
            rate = max(1500.0, self.post_rate.get(transport, 0.0))
            fill(self.endpoints[transport].target, queue, int(rate * self.seconds * 1.5 / self.threads) + 50,
                 client_id)
        client = self._client(transport, queue, client_id, thread)
        if scenario == "post":
            status = client.post()  # creates the queue, warms the connection
            if status != 201:
                raise RuntimeError(f"setup post on {transport}: {status} {str(client.last_reply)[:300]}")
        return client

    def _setup_all(self, scenario: str, transport: str) -> list[Client]:
        """Every thread's client, set up in parallel (pre-filling is the slow part)."""
        clients: list[Client | None] = [None] * self.threads
        errors: list[BaseException] = []

        def setup(i: int) -> None:
            try:
                clients[i] = self._setup(scenario, transport, i)
            except BaseException as exc:
                errors.append(exc)

        setups = [threading.Thread(target=setup, args=(i,)) for i in range(self.threads)]
        for t in setups:
            t.start()
        for t in setups:
            t.join()
        ready = [c for c in clients if c is not None]
        if errors:
            for c in ready:
                c.close()
            raise RuntimeError(f"{scenario}/{transport} setup failed: {errors[0]!r}") from errors[0]
        return ready

    def run(self, scenario: str, transport: str) -> Result:
        self.epoch += 1
        pid = self.endpoints[transport].target.pid or 0
        ready = self._setup_all(scenario, transport)
        sent0 = [c.sent for c in ready]
        received0 = [c.received for c in ready]
        recs = [Recorder() for _ in ready]
        step = STEPS[scenario]
        barrier = threading.Barrier(len(ready) + 1)
        deadline = [0.0]
        failures: list[BaseException] = []

        def worker(i: int) -> None:
            barrier.wait()
            try:
                while time.perf_counter() < deadline[0] and step(ready[i], recs[i]):
                    pass
            except BaseException as exc:  # surfaced after the join
                failures.append(exc)

        pool = [threading.Thread(target=worker, args=(i,), name=f"tb-{i}") for i in range(len(ready))]
        for t in pool:
            t.start()
        server_cpu0 = servers.cpu_seconds(pid)
        gen_cpu0 = time.process_time()
        started = time.perf_counter()
        deadline[0] = started + self.seconds
        barrier.wait()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - started
        gen_cpu = time.process_time() - gen_cpu0
        server_cpu = servers.cpu_seconds(pid) - server_cpu0
        sent = sum(c.sent for c in ready) - sum(sent0)
        received = sum(c.received for c in ready) - sum(received0)
        for c in ready:
            c.close()
        if failures:
            raise RuntimeError(f"{scenario}/{transport} failed: {failures[0]!r}") from failures[0]
        latencies = sorted(lat for rec in recs for lat in rec.latencies)
        result = Result(
            scenario=scenario, transport=transport, seconds=elapsed,
            requests=sum(r.requests for r in recs), messages=sum(r.messages for r in recs),
            errors=sum(r.errors for r in recs),
            p50_ms=percentile(latencies, 0.50) * 1000, p99_ms=percentile(latencies, 0.99) * 1000,
            server_cpu_s=server_cpu, gen_cpu_s=gen_cpu, bytes_sent=sent, bytes_received=received,
            drained=any(r.drained for r in recs),
            first_error=next((r.first_error for r in recs if r.first_error), ""),
        )
        if scenario == "post":
            self.post_rate[transport] = result.msg_per_s
        return result


def pool_rounds(rounds: Sequence[Result]) -> Result:
    """Counts, bytes and CPU summed; p50/p99 the median round's."""
    first = rounds[0]
    return Result(
        scenario=first.scenario, transport=first.transport, seconds=sum(r.seconds for r in rounds),
        requests=sum(r.requests for r in rounds), messages=sum(r.messages for r in rounds),
        errors=sum(r.errors for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        server_cpu_s=sum(r.server_cpu_s for r in rounds), gen_cpu_s=sum(r.gen_cpu_s for r in rounds),
        bytes_sent=sum(r.bytes_sent for r in rounds), bytes_received=sum(r.bytes_received for r in rounds),
        drained=any(r.drained for r in rounds),
        first_error=next((r.first_error for r in rounds if r.first_error), ""),
        per_round_ms_per_msg=[r.server_ms_per_msg for r in rounds],
    )


def run_order(transports: Sequence[str]) -> tuple[str, ...]:
    """Each ceiling right after its zaqar transport, so a pair's runs are seconds apart."""
    paired = [x for t in transports if not t.startswith(CEILING) for x in (t, CEILING + t) if x in transports]
    return tuple(paired + [t for t in transports if t not in paired])


def run_rounds(bench: Bench, rounds: int, log: Callable[[str], None]) -> list[Result]:
    transports = bench.transports
    runs: dict[tuple[str, str], list[Result]] = {(s, t): [] for s in SCENARIOS for t in transports}
    base = run_order(transports)
    step = max(1, len(base) // rounds)  # spread every transport over the positions; pairs stay adjacent
    for rnd in range(rounds):
        shift = (rnd * step) % len(base)
        order = base[shift:] + base[:shift]
        for scenario in SCENARIOS:
            for transport in order:
                log(f"  round {rnd + 1}/{rounds}: {scenario} over {transport}")
                runs[scenario, transport].append(bench.run(scenario, transport))
    return [pool_rounds(runs[s, t]) for s in SCENARIOS for t in transports]


# ----------------------------------------------------------------------------------------------------------
# Reporting.


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _round_ratios(a: Sequence[float | None], b: Sequence[float | None]) -> str:
    """Round i of one transport against round i of the other: the same minute of machine noise."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True) if x is not None and y)
    if not ratios:
        return ""
    return f"[{statistics.median(ratios):.2f}x, {ratios[0]:.2f}-{ratios[-1]:.2f}]"


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
            f"{_fmt(r.server_ms_per_msg, '.3f'):>10} {r.server_cpu_pct:>8.0f} {r.gen_cpu_pct:>8.0f} "
            f"{_fmt(r.tx_per_msg, '.0f'):>8} {_fmt(r.rx_per_msg, '.0f'):>8} {r.errors:>6}{notes}")
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
            cpu = _ratio(ra.server_ms_per_msg, rb.server_ms_per_msg)
            if several:
                cpu += " " + _round_ratios(ra.per_round_ms_per_msg, rb.per_round_ms_per_msg)
            wire_a = (ra.bytes_sent + ra.bytes_received) / ra.messages if ra.messages else None
            wire_b = (rb.bytes_sent + rb.bytes_received) / rb.messages if rb.messages else None
            out(f"  {scenario:<8} {label:<30} CPU/msg {cpu:<24} "
                f"| msgs/s {_ratio(ra.msg_per_s, rb.msg_per_s):>6} | bytes {_ratio(wire_a, wire_b):>6}")
    print_ceiling_ratios(results, out)
    if several:
        width = max(len(r.transport) for r in results)
        out("")
        out("server CPU ms/msg per round:")
        for r in results:
            rounds = " ".join(_fmt(v, ".3f") for v in r.per_round_ms_per_msg)
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
        cpu = _ratio(zq.server_ms_per_msg, ceiling.server_ms_per_msg)
        if several:
            cpu += " " + _round_ratios(zq.per_round_ms_per_msg, ceiling.per_round_ms_per_msg)
        extra = ("n/a" if zq.server_ms_per_msg is None or ceiling.server_ms_per_msg is None
                 else f"{(zq.server_ms_per_msg - ceiling.server_ms_per_msg) * 1000:+.0f} us")
        out(f"  {scenario:<8} {transport:<15} CPU/msg {cpu:<24} {extra:>8} "
            f"| msgs/s {_ratio(zq.msg_per_s, ceiling.msg_per_s):>6}")


# ----------------------------------------------------------------------------------------------------------
# --connections: many idle websocket connections, then one request on each at once.


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < needed:
            raise SystemExit(f"need {needed} file descriptors, the hard limit is {hard}")


def open_many(host: str, port: int, count: int, threads: int) -> tuple[list[WsConn], float, list[float]]:
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
                mine.append(WsConn(host, port))
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
    count = args.connections
    raise_fd_limit(2 * count + 256)  # the server inherits the limit, and holds one socket per connection
    server = servers.start_zaqar(args.server_threads, websocket=True)
    assert server.websocket_port is not None
    pid, port = server.pid, server.websocket_port
    log(f"started zaqar-server pid {pid}: http {server.url}, websocket ws://127.0.0.1:{port}/")
    try:
        target = Target("127.0.0.1", server.port, pid)
        queue = f"tb-{target.run_id}-burst"
        headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
        post = json.dumps({"action": "message_post", "headers": headers,
                           "body": {"queue_name": queue, "messages": [message(0)]}}).encode()
        listing = json.dumps({"action": "message_list", "headers": headers,
                              "body": {"queue_name": queue, "limit": 10, "echo": True}}).encode()
        # warm-up: let the server create its handshake and worker threads before the baseline
        warm, _, _ = open_many("127.0.0.1", port, 2 * args.server_threads, args.concurrency)
        burst(warm, [WsConn.frame(post, False) for _ in warm], "message_post", pid)
        for c in warm:
            c.close()
        time.sleep(1.0)
        before, fds_before, cpu0 = servers.proc_status(pid), servers.open_fds(pid), servers.cpu_seconds(pid)
        log(f"opening {count} websocket connections with {args.concurrency} threads")
        conns, opening_s, handshake_lat = open_many("127.0.0.1", port, count, args.concurrency)
        handshake_cpu = servers.cpu_seconds(pid) - cpu0
        time.sleep(1.0)  # the last handshakes are registered with the I/O loop
        opened, fds_open = servers.proc_status(pid), servers.open_fds(pid)
        log(f"one message_post on each of the {count} connections at once")
        posts = burst(conns, [WsConn.frame(post, False) for _ in conns], "message_post", pid)
        log(f"one message_list on each of the {count} connections at once")
        lists = burst(conns, [WsConn.frame(listing, False) for _ in conns], "message_list", pid)
        after_bursts = servers.proc_status(pid)
        started = time.perf_counter()
        for c in conns:
            c.close()
        closing_s = time.perf_counter() - started
        time.sleep(1.5)  # the I/O loop drops them
        closed, fds_closed = servers.proc_status(pid), servers.open_fds(pid)
    finally:
        server.stop()
    report = {
        "connections": count, "opener_threads": args.concurrency, "server_threads": args.server_threads,
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
    print_connections(report)
    return report


def print_connections(rep: dict[str, Any], out: Callable[[str], None] = print) -> None:
    n = rep["connections"]
    rss, threads, fds = rep["rss_kb"], rep["threads"], rep["fds"]
    out(f"\n{n} websocket connections to one zaqar-server ({rep['server_threads']} workers); "
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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scenarios_mode(args: argparse.Namespace, log: Callable[[str], None]) -> list[Result]:
    started: list[servers.ServerProcess] = []
    try:
        server = servers.start_zaqar(args.server_threads, websocket=True)
        started.append(server)
        assert server.websocket_port is not None
        log(f"started zaqar-server pid {server.pid}: http {server.url}, "
            f"websocket ws://127.0.0.1:{server.websocket_port}/ ({args.server_threads} threads / workers)")
        zaqar_http = Target("127.0.0.1", server.port, server.pid)
        endpoints = {t: Endpoint(zaqar_http, None if t.startswith("http-") else server.websocket_port)
                     for t in TRANSPORTS}
        if args.ceilings:
            http = servers.start_ceiling("http", args.server_threads)
            started.append(http)
            ws = servers.start_ceiling("websocket", args.server_threads)
            started.append(ws)
            log(f"started ceilings: cheroot+falcon pid {http.pid} on {http.url}, "
                f"ws4py pid {ws.pid} on ws://127.0.0.1:{ws.port}/")
            for t in TRANSPORTS:
                ceiling = http if t.startswith("http-") else ws
                endpoints[CEILING + t] = Endpoint(Target("127.0.0.1", ceiling.port, ceiling.pid),
                                                  ceiling.websocket_port)
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
                        help="HTTP threads and websocket workers of the server (default 16)")
    parser.add_argument("--connections", type=int, default=0, metavar="N",
                        help="instead of the scenarios: open N websocket connections, measure handshake "
                             "rate, server memory per connection and the time to answer one request on each")
    parser.add_argument("--ceilings", action=argparse.BooleanOptionalAction, default=True,
                        help="also run every scenario against the bare-framework servers of "
                             "benchmarks/ceilings.py, interleaved, and print zaqar / ceiling (default on)")
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
        results = connections_mode(args, _log)
    else:
        results = [r.as_dict() for r in scenarios_mode(args, _log)]
    _log(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "concurrency": args.concurrency, "rounds": args.rounds,
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
