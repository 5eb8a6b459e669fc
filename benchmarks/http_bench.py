"""HTTP v2 benchmark: throughput, latency and server CPU per message.

    python -m benchmarks.http_bench [--url URL [--pid PID]] [--seconds S] [--concurrency N]
    python -m benchmarks.http_bench --compare-wsgi [--seconds S] [--concurrency N]

Without ``--url`` it starts its own ``zaqar-server`` (temporary state dir, free
port) and stops it at the end. Each scenario runs for ``--seconds`` with
``--concurrency`` client threads; each thread uses its own queue. The clients
send pre-built request bytes over raw sockets and parse only the status line,
Content-Length and (for claims) the JSON body, so the load generator stays
light; its own CPU share is reported next to the server's.

Server CPU time is utime+stime from /proc/<pid>/stat (the server process and its
children) read before and after each scenario, divided by the messages moved:
on a shared, noisy machine this holds up far better than requests/s. See
benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from benchmarks import servers
from benchmarks.common import Probe, Recorder, fmt, log, percentile, ratio, timed

PROJECT = "bench-project"
TTL = 3600
MAX_POST_BATCH = 20  # [transport] max_messages_per_page default: the most one POST may carry


# ----------------------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client: pre-built requests out, (status, body) back.


class HttpError(Exception):
    pass


def build_request(method: str, path: str, host: str, client_id: str, body: bytes | None = None,
                  close: bool = False, project: str = PROJECT) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"Client-ID: {client_id}",
        f"X-Project-ID: {project}",
        "Content-Type: application/json",
        "Accept: application/json",
    ]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Conn:
    """One client connection; reconnects transparently when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sock: socket.socket | None = None
        self.buf = b""
        self.reconnects = 0

    def connect(self) -> None:
        self.close()
        sock = socket.create_connection(self.addr, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, data: bytes) -> tuple[int, bytes]:
        fresh = self.sock is None
        if fresh:
            self.connect()
        try:
            self.sock.sendall(data)  # type: ignore[union-attr]
            return self._read_response()
        except (ConnectionError, HttpError) as exc:
            # a kept-alive connection the server closed meanwhile: retry once on a new one
            if fresh or (isinstance(exc, HttpError) and str(exc) != "closed"):
                raise
            self.reconnects += 1
            self.connect()
            self.sock.sendall(data)  # type: ignore[union-attr]
            return self._read_response()

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)  # type: ignore[union-attr]
        if not chunk:
            raise HttpError("closed")
        return chunk

    def _read_response(self) -> tuple[int, bytes]:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            buf += self._recv()
            end = buf.find(b"\r\n\r\n")
        head = buf[:end].lower()
        status = int(head[9:12])
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            eol = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:eol if eol >= 0 else len(head)])
        elif b"\r\ntransfer-encoding:" in head:
            raise HttpError("chunked responses are not supported")
        elif status not in (204, 304) and status >= 200:
            raise HttpError(f"response {status} without Content-Length")
        start = end + 4
        while len(buf) < start + length:
            buf += self._recv()
        body = buf[start:start + length]
        self.buf = buf[start + length:]
        if b"\r\nconnection: close" in head:
            self.close()
        return status, body


# ----------------------------------------------------------------------------------------------------------
# Scenarios: per-thread setup (untimed), then step() repeatedly until the deadline.


@dataclasses.dataclass
class Target:
    host: str
    port: int
    pid: int | None
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])
    epoch: int = 0  # bumped per scenario run, so every run gets fresh queues

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    def queue(self, scenario: str, thread: int) -> str:
        return f"bench-{self.run_id}-{self.epoch}-{scenario}-{thread}"


def messages_body(count: int, thread: int) -> bytes:
    msgs = [{"ttl": TTL, "body": {"event": "bench", "thread": thread, "seq": i, "data": "x" * 64}}
            for i in range(count)]
    return json.dumps({"messages": msgs}).encode()


def fill(target: Target, queue: str, count: int, client_id: str, project: str = PROJECT) -> None:
    """Put ``count`` messages on ``queue``, MAX_POST_BATCH per request, on one connection."""
    conn = Conn(target.host, target.port)
    try:
        while count > 0:
            batch = min(count, MAX_POST_BATCH)
            req = build_request("POST", f"/v2/queues/{queue}/messages", target.hostport, client_id,
                                messages_body(batch, 0), project=project)
            status, body = conn.request(req)
            if status != 201:
                raise HttpError(f"fill {queue}: {status} {body[:200]!r}")
            count -= batch
    finally:
        conn.close()


class Scenario:
    name = ""
    title = ""
    per_request = 1  # messages per successful request, where fixed

    def setup(self, target: Target, thread: int, threads: int, seconds: float) -> object:
        raise NotImplementedError

    def step(self, state: object, rec: Recorder) -> bool:
        """One unit of work; False ends this thread early."""
        raise NotImplementedError

    def teardown(self, state: object) -> None:
        conn = getattr(state, "conn", None)
        if isinstance(conn, Conn):
            conn.close()


@dataclasses.dataclass
class SimpleState:
    conn: Conn
    request: bytes
    expect: int


class PostKeepAlive(Scenario):
    def __init__(self, batch: int) -> None:
        self.per_request = batch
        self.name = f"post{batch}-keepalive"
        self.title = f"POST {batch} msg{'s' if batch > 1 else ''}/req, keep-alive"

    def setup(self, target: Target, thread: int, threads: int, seconds: float) -> object:
        req = build_request("POST", f"/v2/queues/{target.queue(self.name, thread)}/messages", target.hostport,
                            str(uuid.uuid4()), messages_body(self.per_request, thread))
        state = SimpleState(Conn(target.host, target.port), req, 201)
        state.conn.request(req)  # connect and create the queue before the clock starts
        return state

    def step(self, state: object, rec: Recorder) -> bool:
        assert isinstance(state, SimpleState)
        started = time.perf_counter()
        status, _ = state.conn.request(state.request)
        rec.latencies.append(time.perf_counter() - started)
        if status == state.expect:
            rec.requests += 1
            rec.messages += self.per_request
        else:
            rec.errors += 1
        return True


class PostNewConnection(PostKeepAlive):
    """POST 1 message, connect + request + close each time (``Connection: close``)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.name, self.title = "post1-newconn", "POST 1 msg/req, new connection each"

    def setup(self, target: Target, thread: int, threads: int, seconds: float) -> object:
        state = super().setup(target, thread, threads, seconds)
        assert isinstance(state, SimpleState)
        state.conn.close()
        path = f"/v2/queues/{target.queue(self.name, thread)}/messages"
        body = messages_body(1, thread)
        state.request = build_request("POST", path, target.hostport, str(uuid.uuid4()), body, close=True)
        return state

    def step(self, state: object, rec: Recorder) -> bool:
        assert isinstance(state, SimpleState)
        started = time.perf_counter()
        try:
            status, _ = state.conn.request(state.request)  # connects, since the last response closed it
        finally:
            state.conn.close()
        rec.latencies.append(time.perf_counter() - started)
        if status == state.expect:
            rec.requests += 1
            rec.messages += 1
        else:
            rec.errors += 1
        return True


class ListMessages(Scenario):
    name, title, per_request = "list", "GET ?limit=10&echo=true, 100-msg queue", 10
    prefill = 100

    def setup(self, target: Target, thread: int, threads: int, seconds: float) -> object:
        queue, client_id = target.queue(self.name, thread), str(uuid.uuid4())
        fill(target, queue, self.prefill, client_id)
        path = f"/v2/queues/{queue}/messages?limit=10&echo=true"
        req = build_request("GET", path, target.hostport, client_id)
        state = SimpleState(Conn(target.host, target.port), req, 200)
        state.conn.request(req)
        return state

    def step(self, state: object, rec: Recorder) -> bool:
        assert isinstance(state, SimpleState)
        started = time.perf_counter()
        status, body = state.conn.request(state.request)
        rec.latencies.append(time.perf_counter() - started)
        if status == 200:
            rec.requests += 1
            rec.messages += body.count(b'"age":')  # one per message returned; links carry no age
        else:
            rec.errors += 1
        return True


@dataclasses.dataclass
class ClaimState:
    conn: Conn
    claim: bytes
    delete_head: bytes  # everything of a DELETE request but its first line


class ClaimDelete(Scenario):
    """POST claims?limit=10, then DELETE each claimed message with its claim_id (messages = deletes)."""

    name, title, per_request = "claim-delete", "POST claims?limit=10 + DELETE each", 1
    expected_rate = 1500.0  # msgs/s for all threads together; raised from the POST-1 rate when known

    def setup(self, target: Target, thread: int, threads: int, seconds: float) -> object:
        queue, client_id = target.queue(self.name, thread), str(uuid.uuid4())
        # enough that the queue does not run dry before the deadline; a drained queue is reported
        fill(target, queue, int(self.expected_rate * seconds * 1.5 / threads) + 50, client_id)
        claim = build_request("POST", f"/v2/queues/{queue}/claims?limit=10", target.hostport, client_id,
                              b'{"ttl": 300, "grace": 60}')
        head = build_request("DELETE", "/", target.hostport, client_id)
        return ClaimState(Conn(target.host, target.port), claim, head[head.index(b"\r\n"):])

    def step(self, state: object, rec: Recorder) -> bool:
        assert isinstance(state, ClaimState)
        started = time.perf_counter()
        status, body = state.conn.request(state.claim)
        rec.latencies.append(time.perf_counter() - started)
        if status == 204:
            rec.drained = True
            return False
        if status != 201:
            rec.errors += 1
            return True
        rec.requests += 1
        for message in json.loads(body)["messages"]:
            req = b"DELETE " + message["href"].encode() + b" HTTP/1.1" + state.delete_head
            started = time.perf_counter()
            status, _ = state.conn.request(req)
            rec.latencies.append(time.perf_counter() - started)
            if status == 204:
                rec.requests += 1
                rec.messages += 1
            else:
                rec.errors += 1
        return True


# ----------------------------------------------------------------------------------------------------------
# Running a scenario and reporting.


@dataclasses.dataclass
class Result:
    name: str
    title: str
    seconds: float
    requests: int
    messages: int
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float | None
    gen_cpu_s: float
    drained: bool
    reconnects: int
    per_round_msg_per_s: list[float] = dataclasses.field(default_factory=list)
    per_round_ms_per_msg: list[float | None] = dataclasses.field(default_factory=list)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def msg_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def server_ms_per_msg(self) -> float | None:
        if self.server_cpu_s is None or not self.messages:
            return None
        return self.server_cpu_s * 1000 / self.messages

    @property
    def server_cpu_pct(self) -> float | None:
        return None if self.server_cpu_s is None else 100 * self.server_cpu_s / self.seconds

    @property
    def gen_cpu_pct(self) -> float:
        return 100 * self.gen_cpu_s / self.seconds

    def as_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out.update(req_per_s=self.req_per_s, msg_per_s=self.msg_per_s,
                   server_ms_per_msg=self.server_ms_per_msg, server_cpu_pct=self.server_cpu_pct,
                   gen_cpu_pct=self.gen_cpu_pct)
        return out


def run_scenario(scenario: Scenario, target: Target, threads: int, seconds: float) -> Result:
    target.epoch += 1
    states = [scenario.setup(target, i, threads, seconds) for i in range(threads)]
    try:
        m = timed(lambda i, rec: scenario.step(states[i], rec), threads, seconds, Probe(target.pid), Recorder)
    finally:
        for state in states:
            scenario.teardown(state)
    if m.failures:
        raise RuntimeError(f"scenario {scenario.name} failed: {m.failures[0]}")
    recs = m.recs
    latencies = sorted(lat for rec in recs for lat in rec.latencies)
    return Result(
        name=scenario.name, title=scenario.title, seconds=m.seconds,
        requests=sum(r.requests for r in recs), messages=sum(r.messages for r in recs),
        errors=sum(r.errors for r in recs),
        p50_ms=percentile(latencies, 0.50) * 1000, p99_ms=percentile(latencies, 0.99) * 1000,
        server_cpu_s=m.server_cpu, gen_cpu_s=m.own_cpu, drained=any(r.drained for r in recs),
        reconnects=sum(s.conn.reconnects for s in states if isinstance(getattr(s, "conn", None), Conn)),
    )


def print_table(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    header = (f"{'scenario':<16} {'req/s':>8} {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv ms/msg':>10} "
              f"{'srv CPU%':>8} {'gen CPU%':>8} {'errors':>6}")
    out(header)
    out("-" * len(header))
    for r in results:
        notes = " (queue drained)" if r.drained else ""
        notes += f" ({r.reconnects} reconnects)" if r.reconnects else ""
        out(f"{r.name:<16} {r.req_per_s:>8.0f} {r.msg_per_s:>8.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{fmt(r.server_ms_per_msg, '.3f'):>10} {fmt(r.server_cpu_pct, '.0f'):>8} "
            f"{r.gen_cpu_pct:>8.0f} {r.errors:>6}{notes}")


def print_ratios(results: Sequence[Result], out: Callable[[str], None] = print) -> None:
    by = {r.name: r for r in results}
    pairs = [
        ("msgs/s  keep-alive / new-connection (POST 1)", "post1-keepalive", "post1-newconn", "msg_per_s"),
        ("msgs/s  POST 10 / POST 1 (keep-alive)", "post10-keepalive", "post1-keepalive", "msg_per_s"),
        ("msgs/s  list (10/req) / POST 1", "list", "post1-keepalive", "msg_per_s"),
        ("msgs/s  claim+delete / POST 1", "claim-delete", "post1-keepalive", "msg_per_s"),
        ("srv CPU/msg  new-connection / keep-alive (POST 1)", "post1-newconn", "post1-keepalive",
         "server_ms_per_msg"),
        ("srv CPU/msg  POST 1 / POST 10", "post1-keepalive", "post10-keepalive", "server_ms_per_msg"),
        ("srv CPU/msg  claim+delete / POST 1", "claim-delete", "post1-keepalive", "server_ms_per_msg"),
    ]
    lines = [(label, ratio(getattr(by[a], attr), getattr(by[b], attr)))
             for label, a, b, attr in pairs if a in by and b in by]
    if lines:
        out("")
        out("ratios (same run):")
        for label, value in lines:
            out(f"  {label:<52} {value:>7}")


def default_scenarios() -> list[Scenario]:
    return [PostKeepAlive(1), PostKeepAlive(10), PostNewConnection(), ListMessages(), ClaimDelete()]


def compare_scenarios() -> list[Scenario]:
    return [PostKeepAlive(1), PostNewConnection(), ListMessages()]


def pool(rounds: Sequence[Result]) -> Result:
    """One result from several runs of a scenario: counts and CPU summed, latencies the median round's."""
    if len(rounds) == 1:
        return rounds[0]
    cpus = [r.server_cpu_s for r in rounds]
    return Result(
        name=rounds[0].name, title=rounds[0].title, seconds=sum(r.seconds for r in rounds),
        requests=sum(r.requests for r in rounds), messages=sum(r.messages for r in rounds),
        errors=sum(r.errors for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        server_cpu_s=None if None in cpus else sum(c for c in cpus if c is not None),
        gen_cpu_s=sum(r.gen_cpu_s for r in rounds), drained=any(r.drained for r in rounds),
        reconnects=sum(r.reconnects for r in rounds),
        per_round_msg_per_s=[r.msg_per_s for r in rounds],
        per_round_ms_per_msg=[r.server_ms_per_msg for r in rounds],
    )


def run_rounds(targets: dict[str, Target], scenarios: Sequence[Scenario], args: argparse.Namespace,
               log: Callable[[str], None]) -> dict[str, list[Result]]:
    """Each round runs every scenario against every target, scenario by scenario, so the targets
    compared on one scenario are measured minutes apart at most; the target order rotates per round."""
    names = list(targets)
    runs: dict[str, dict[str, list[Result]]] = {n: {sc.name: [] for sc in scenarios} for n in names}
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for scenario in scenarios:
            for name in order:
                if isinstance(scenario, ClaimDelete) and runs[name].get("post1-keepalive"):
                    seen = runs[name]["post1-keepalive"][-1].msg_per_s
                    scenario.expected_rate = max(ClaimDelete.expected_rate, seen)
                prefix = f"[{name}] " if len(names) > 1 else ""
                suffix = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
                log(f"  {prefix}{scenario.name}: {scenario.title}{suffix}")
                runs[name][scenario.name].append(run_scenario(scenario, targets[name], args.concurrency,
                                                              args.seconds))
    return {n: [pool(runs[n][sc.name]) for sc in scenarios] for n in names}


# ----------------------------------------------------------------------------------------------------------
# Entry points.


def _setting(args: argparse.Namespace) -> str:
    rounds = f" x {args.rounds} rounds (pooled)" if args.rounds > 1 else ""
    return f"{args.concurrency} client threads, {args.seconds:g}s per scenario{rounds}"


def bench_one(args: argparse.Namespace) -> list[Result]:
    server = None
    if args.url:
        parts = urlsplit(args.url)
        target = Target(parts.hostname or "127.0.0.1", parts.port or 80, args.pid)
        log(f"benchmarking {args.url}" + ("" if args.pid else " (no --pid: server CPU figures skipped)"))
    else:
        server = servers.start_zaqar(args.server_threads)
        target = Target("127.0.0.1", server.port, server.pid)
        log(f"started zaqar-server pid {server.pid} on {server.url} ({args.server_threads} threads)")
    try:
        results = run_rounds({"zaqar": target}, default_scenarios(), args, log)["zaqar"]
    finally:
        if server is not None:
            server.stop()
    where = args.url or f"zaqar-server (cheroot, {args.server_threads} threads, sqlite)"
    print(f"\nzaqar HTTP v2 at {where}; {_setting(args)}")
    print_table(results)
    print_ratios(results)
    return results


def compare_wsgi(args: argparse.Namespace) -> dict[str, list[Result]]:
    started: dict[str, servers.ServerProcess] = {}
    try:
        for name in servers.WSGI_SERVERS:
            if not servers.wsgi_server_installed(name):
                log(f"{name}: not installed, left out")
                continue
            started[name] = servers.start_wsgi(name, args.server_threads)
            log(f"{name}: pid {started[name].pid} on {started[name].url}")
        targets = {n: Target("127.0.0.1", s.port, s.pid) for n, s in started.items()}
        results = run_rounds(targets, compare_scenarios(), args, log)
    finally:
        for server in started.values():
            server.stop()
    print_comparison(results, args)
    return results


def print_comparison(results: dict[str, list[Result]], args: argparse.Namespace,
                     out: Callable[[str], None] = print) -> None:
    names = list(results)
    out(f"\nsame falcon app under each WSGI server ({args.server_threads} server threads; gunicorn: "
        f"1 gthread worker); {_setting(args)}")
    head = f"{'scenario':<16}" + "".join(f" {n + ' msgs/s':>16} {n + ' ms/msg':>16}" for n in names)
    out(head)
    out("-" * len(head))
    scenario_names = [r.name for r in results[names[0]]]
    for i, scenario in enumerate(scenario_names):
        row = f"{scenario:<16}"
        for n in names:
            r = results[n][i]
            row += f" {r.msg_per_s:>16.0f} {fmt(r.server_ms_per_msg, '.3f'):>16}"
        out(row)
    base_name = names[0]
    out(f"\nrelative to {base_name}: msgs/s ratio (higher is faster) / server CPU ms/msg ratio "
        "(lower is cheaper)")
    for i, scenario in enumerate(scenario_names):
        base = results[base_name][i]
        cells = [f"{n} {ratio(results[n][i].msg_per_s, base.msg_per_s)} / "
                 f"{ratio(results[n][i].server_ms_per_msg, base.server_ms_per_msg)}" for n in names[1:]]
        out(f"  {scenario:<16} " + ";  ".join(cells))
    if args.rounds > 1:
        out("\nserver CPU ms/msg per round:")
        for i, scenario in enumerate(scenario_names):
            cells = [f"{n} " + " ".join(fmt(v, ".3f") for v in results[n][i].per_round_ms_per_msg)
                     for n in names]
            out(f"  {scenario:<16} " + ";  ".join(cells))
    out("\ndetail:")
    for n in names:
        out(f"[{n}]")
        print_table(results[n], out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_bench",
                                     description="Benchmark the zaqar HTTP v2 transport.")
    parser.add_argument("--url", help="benchmark this running server (e.g. http://127.0.0.1:8888) instead of "
                                      "starting zaqar-server")
    parser.add_argument("--pid", type=int, help="with --url: server pid, for the server CPU figures")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario (default 5)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--server-threads", type=int, default=servers.DEFAULT_THREADS,
                        help="worker threads of the servers this script starts "
                        "(default 4, as zaqar-server on sqlite and redis)")
    parser.add_argument("--compare-wsgi", action="store_true",
                        help="serve the same app under cheroot, waitress and gunicorn in turn and compare")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every scenario this many times, interleaved across servers, and pool "
                             "the runs (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    if args.compare_wsgi and args.url:
        parser.error("--compare-wsgi starts its own servers; it cannot be combined with --url")
    if args.pid and not args.url:
        parser.error("--pid only applies with --url")
    if args.concurrency < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--concurrency and --rounds must be >= 1 and --seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare_wsgi:
        results: object = {k: [r.as_dict() for r in v] for k, v in compare_wsgi(args).items()}
    else:
        results = [r.as_dict() for r in bench_one(args)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "concurrency": args.concurrency, "rounds": args.rounds,
                       "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
