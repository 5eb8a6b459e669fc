"""Pooling benchmark: message post throughput on one store, and pooled over 1, 2 and 3 pools.

    python -m benchmarks.pool_bench [--store sqlite|redis] [--seconds S] [--rounds R] [--threads N]
                                    [--queues Q] [--in-process | --no-in-process] [--http | --no-http]
                                    [--redis-url URL] [--server-threads T] [--json PATH]

Four scenarios, interleaved in every round (the order rotating per round, as in
``store_bench``), so the ratios between them come from the same minutes of machine noise:

* ``single``: the message store on its own (``pooling = false``), the baseline;
* ``pooled-1``, ``pooled-2``, ``pooled-3``: the pooled store (``zaqar.storage.pooling``) over
  a sqlite management store with 1, 2 or 3 pools of the same kind, equal weights.

Every scenario has stores of its own: with ``--store sqlite`` one SQLite file per pool in a
temporary directory; with ``--store redis`` one key prefix per pool on the Redis server, keys
deleted at the end. The management store (the catalog of which pool holds a queue) is always a
SQLite file, as ``[drivers] management_store`` defaults to.

Phase 1 drives the API layer in-process (``Api(Context(store=...)).handle``, no transport) from
``--threads`` threads; phase 2 (``--http``, default on) starts one ``zaqar-server`` per scenario
(HTTP only; pooled ones with ``pooling = true`` and their pools registered in
``<state_path>/zaqar-management.sqlite`` before the server starts) and sends HTTP/1.1 keep-alive
requests from ``--threads`` client threads (``http_bench``'s raw-socket client). Either way the
work is ``message_post`` with 1 message per call, round-robin over ``--queues`` queues (fresh for
every run, created and so placed on a pool before the clock starts; thread i posts to queues i,
i+N, i+2N, ...), so a pooled run spreads over all its pools.

Figures as in ``store_bench``: msgs/s, p50/p99 per call, CPU ms per message (in-process: this
process; HTTP: the server, from ``/proc``), plus Redis's CPU with ``--store redis``; and the
ratios pooled-N / single and pooled-3 / pooled-1, pooled over the rounds and per round. After
every run the queues are counted through the store (every post the clients were told of must be
there) and the queues' placement over the pools is read from the catalog. At the end of phase 1,
the catalog reads of one pooled ``message_post`` are counted and one ``catalog.get`` is timed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks import http_bench, servers, store_bench
from benchmarks.common import Probe, delete_prefix, fmt, is_local, log, ratio, redis_pids, timed, with_query
from benchmarks.store_bench import Outcome, Rec, Run
from zaqar import storage
from zaqar.api import Api, Context, Features, Request
from zaqar.storage import errors as storage_errors
from zaqar.storage import pooling
from zaqar.storage.base import DataDriver

PROJECT = http_bench.PROJECT
TTL = 300
STORES = ("sqlite", "redis")
BASELINE = "single"
MANAGEMENT_FILE = "zaqar-management.sqlite"  # bootstrap.management_store_uri's default, under state_path
POOL_WEIGHT = 100
CATALOG_PROBES = 2000  # catalog lookups timed for the routing figure


@dataclasses.dataclass(frozen=True)
class Layout:
    label: str
    pools: int  # 0: not pooled


LAYOUTS = (Layout("single", 0), Layout("pooled-1", 1), Layout("pooled-2", 2), Layout("pooled-3", 3))


# ----------------------------------------------------------------------------------------------------------
# The stores: a namespace of their own, one store URI per pool.


@dataclasses.dataclass
class Namespace:
    kind: str  # sqlite or redis
    where: Path  # temporary directory: sqlite pools, in-process catalogs
    uri: Callable[[str], str]  # store URI of the pool called ``name``
    db_pids: Callable[[], Sequence[int]] = tuple


@contextlib.contextmanager
def namespace(kind: str, args: argparse.Namespace, notes: list[str]) -> Iterator[Namespace]:
    where = Path(tempfile.mkdtemp(prefix=f"zaqar-pool-bench-{kind}-"))
    try:
        if kind == "sqlite":
            yield Namespace(kind, where, lambda name: f"sqlite:///{where / name}.sqlite")
        else:
            with _redis_prefixes(args.redis_url, notes) as (uri, pids):
                yield Namespace(kind, where, uri, pids)
    finally:
        shutil.rmtree(where, ignore_errors=True)


@contextlib.contextmanager
def _redis_prefixes(base: str, notes: list[str]) -> Iterator[tuple[Callable[[str], str], Callable[[], Any]]]:
    """One key prefix per pool, all under one run prefix whose keys are deleted afterwards."""
    run_prefix = f"zaqar-pool-bench-{uuid.uuid4().hex}-"
    pids = redis_pids() if is_local(base) else ()

    def uri(name: str) -> str:
        return with_query(base, f"prefix={quote(run_prefix + name + ':')}")

    try:
        yield uri, lambda: pids
    finally:
        delete_prefix(base, run_prefix, notes)


def pool_uris(ns: Namespace, phase: str, layout: Layout) -> list[str]:
    return [ns.uri(f"{phase}-{layout.label}-p{k}") for k in range(1, layout.pools + 1)]


def register_pools(catalog: Path, uris: Sequence[str]) -> None:
    """Pools ``p1``..``pN`` (equal weights) in the sqlite management store ``catalog``."""
    control = storage.load_control_driver("sqlite", f"sqlite:///{catalog}")
    try:
        for k, uri in enumerate(uris, 1):
            control.pools.create(f"p{k}", uri, POOL_WEIGHT)
    finally:
        control.close()


def pooled_store(catalog: Path) -> pooling.DataDriver:
    return pooling.DataDriver(storage.load_control_driver("sqlite", f"sqlite:///{catalog}"))


def build_api(store: DataDriver) -> Api:
    """What ``bootstrap.build_api`` gives the handlers (bar the notifier and policy), for either store."""
    if isinstance(store, pooling.DataDriver):
        return Api(Context(store=store, features=Features(pooling=True), control=store.control,
                           pool_store=store.pool_store))
    return Api(Context(store=store))


# ----------------------------------------------------------------------------------------------------------
# The runs: message_post, 1 message, round-robin over the queues.


@dataclasses.dataclass
class Env:
    layout: Layout
    kind: str
    store: DataDriver  # in-process: the store under test; HTTP: the server's stores, opened here to count
    probe: Probe
    api: Api | None = None  # in-process
    server: servers.ServerProcess | None = None  # HTTP
    epoch: int = 0
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    def queues(self, count: int) -> list[str]:
        return [f"bench-{self.run_id}-{self.epoch}-{i}" for i in range(count)]


@dataclasses.dataclass
class Lane:
    """One client thread: its queues and a pre-built request for each."""

    queues: list[str]
    requests: list[Any]  # zaqar.api.Request in-process, request bytes over HTTP
    posted: list[int]  # successful posts per queue
    conn: http_bench.Conn | None = None
    next: int = 0


@dataclasses.dataclass
class PostScenario:
    queues: int
    name: str  # per phase: store_bench.run_rounds keys the runs by (name, scenario label)


@dataclasses.dataclass
class PoolRun(Run):
    placement: str = ""  # queues per pool, from the catalog


def _draft(thread: int, seq: int) -> dict[str, Any]:
    """The ~100-byte message of http_bench (ttl 300)."""
    return {"ttl": TTL, "body": {"event": "bench", "thread": thread, "seq": seq, "data": "x" * 64}}


def api_lanes(env: Env, queues: Sequence[str], threads: int) -> list[Lane]:
    assert env.api is not None
    lanes = []
    for i in range(threads):
        mine, client_id = list(queues[i::threads]), str(uuid.uuid4())
        requests = [Request("message_post", PROJECT, client_id, {"queue_name": q, "messages": [_draft(i, 0)]})
                    for q in mine]
        for q, req in zip(mine, requests, strict=True):
            resp = env.api.handle(req)  # creates and places the queue before the clock starts
            if resp.status != 201:
                raise RuntimeError(f"setup post on {q}: {resp.status} {resp.body}")
        lanes.append(Lane(mine, requests, [0] * len(mine)))
    return lanes


def api_step(env: Env, lane: Lane, rec: Rec) -> bool:
    assert env.api is not None
    k = lane.next
    lane.next = (k + 1) % len(lane.requests)
    started = time.perf_counter()
    resp = env.api.handle(lane.requests[k])
    rec.latencies.append(time.perf_counter() - started)
    if resp.status == 201 and len(resp.data) == 1:
        rec.requests += 1
        rec.messages += 1
        lane.posted[k] += 1
    else:
        rec.error(f"message_post {lane.queues[k]} -> {resp.status} {resp.body}")
    return True


def http_lanes(env: Env, queues: Sequence[str], threads: int) -> list[Lane]:
    assert env.server is not None
    host, port = "127.0.0.1", env.server.port
    hostport = f"{host}:{port}"
    lanes = []
    for i in range(threads):
        mine, client_id = list(queues[i::threads]), str(uuid.uuid4())
        body = json.dumps({"messages": [_draft(i, 0)]}).encode()
        requests = [http_bench.build_request("POST", f"/v2/queues/{q}/messages", hostport, client_id, body)
                    for q in mine]
        lane = Lane(mine, requests, [0] * len(mine), http_bench.Conn(host, port))
        lanes.append(lane)  # closed by the caller, also when a setup post fails
        for q, req in zip(mine, requests, strict=True):
            status, reply = lane.conn.request(req)  # connects, creates and places the queue
            if status != 201:
                raise RuntimeError(f"setup POST on {q}: {status} {reply[:200]!r}")
    return lanes


def http_step(lane: Lane, rec: Rec) -> bool:
    assert lane.conn is not None
    k = lane.next
    lane.next = (k + 1) % len(lane.requests)
    started = time.perf_counter()
    status, reply = lane.conn.request(lane.requests[k])
    rec.latencies.append(time.perf_counter() - started)
    if status == 201:
        rec.requests += 1
        rec.messages += 1
        lane.posted[k] += 1
    else:
        rec.error(f"POST {lane.queues[k]} -> {status} {reply[:200]!r}")
    return True


def count_problems(env: Env, lanes: Sequence[Lane], before: dict[str, Any]) -> list[str]:
    """Every queue must have grown by exactly the posts its client was told succeeded."""
    after = store_bench.stats_of(env.store, [q for lane in lanes for q in lane.queues])
    problems = []
    for lane in lanes:
        for q, told in zip(lane.queues, lane.posted, strict=True):
            change = after[q].total - before[q].total
            if change != told:
                problems.append(f"queue {q}: clients were told {told} messages posted, the queue's total "
                                f"changed by {change} ({before[q].total} -> {after[q].total})")
    return problems


def placement(env: Env, queues: Sequence[str]) -> tuple[str, list[str]]:
    """'p1 21 / p2 22 / p3 21' from the catalog, and any queue placed nowhere or pool left empty."""
    if not isinstance(env.store, pooling.DataDriver):
        return "", []
    counts: collections.Counter[str] = collections.Counter()
    for q in queues:
        try:
            counts[env.store.control.catalog.get(PROJECT, q)] += 1
        except storage_errors.QueueNotMapped:
            counts["(none)"] += 1
    problems = [f"{counts['(none)']} queues placed on no pool"] if counts["(none)"] else []
    names = [f"p{k}" for k in range(1, env.layout.pools + 1)]
    return " / ".join(f"{n} {counts[n]}" for n in names), problems


def measure(env: Env, phase: str, lanes: list[Lane], step: Callable[[Lane, Rec], bool], threads: int,
            seconds: float) -> PoolRun:
    queues = [q for lane in lanes for q in lane.queues]
    before = store_bench.stats_of(env.store, queues)
    m = timed(lambda i, rec: step(lanes[i], rec), threads, seconds, env.probe, Rec)
    spread, placed_problems = placement(env, queues)
    problems = store_bench.rec_problems(m) + count_problems(env, lanes, before) + placed_problems
    return PoolRun(phase, env.layout.label, env.kind, m.seconds, sum(r.requests for r in m.recs),
                   sum(r.messages for r in m.recs), sum(r.errors for r in m.recs),
                   [x for r in m.recs for x in r.latencies], m.own_cpu, m.server_cpu, m.db_cpu, False,
                   problems, placement=spread)


def api_run(scenario: PostScenario, env: Env, threads: int, seconds: float) -> Run:
    env.epoch += 1
    lanes = api_lanes(env, env.queues(scenario.queues), threads)
    return measure(env, "in-process", lanes, lambda lane, rec: api_step(env, lane, rec), threads, seconds)


def http_run(scenario: PostScenario, env: Env, threads: int, seconds: float) -> Run:
    env.epoch += 1
    lanes: list[Lane] = []
    try:
        lanes = http_lanes(env, env.queues(scenario.queues), threads)
        return measure(env, "http", lanes, http_step, threads, seconds)
    finally:
        for lane in lanes:
            if lane.conn is not None:
                lane.conn.close()


# ----------------------------------------------------------------------------------------------------------
# The phases.


@dataclasses.dataclass
class Routing:
    """What one pooled message_post asks the catalog, and what one lookup costs (single thread)."""

    lookups_per_post: int
    wall_us: float
    cpu_us: float


def measure_routing(env: Env) -> Routing | None:
    """Counts the catalog reads of one message_post, then times ``catalog.get`` alone."""
    store = env.store
    if not isinstance(store, pooling.DataDriver) or env.api is None:
        return None
    catalog = store.control.catalog
    queue = env.queues(1)[0] + "-routing"
    params = {"queue_name": queue, "messages": [_draft(0, 0)]}
    req = Request("message_post", PROJECT, str(uuid.uuid4()), params)
    env.api.handle(req)  # places the queue
    calls = [0]
    real_get = catalog.get

    def counting_get(project: str | None, name: str) -> str:
        calls[0] += 1
        return real_get(project, name)

    catalog.get = counting_get  # type: ignore[method-assign]
    try:
        env.api.handle(req)
    finally:
        del catalog.get  # back to the class's method
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(CATALOG_PROBES):
        catalog.get(PROJECT, queue)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Routing(calls[0], wall * 1e6 / CATALOG_PROBES, cpu * 1e6 / CATALOG_PROBES)


def in_process_phase(args: argparse.Namespace, outcome: Outcome) -> Routing | None:
    scenario = PostScenario(args.queues, "post1")
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(namespace(args.store, args, outcome.notes))
        envs: dict[str, Env] = {}
        for layout in LAYOUTS:
            try:
                store: DataDriver
                if layout.pools:
                    catalog = ns.where / f"in-process-{layout.label}-catalog.sqlite"
                    register_pools(catalog, pool_uris(ns, "in-process", layout))
                    store = pooled_store(catalog)
                else:
                    store = storage.load_data_driver(args.store, ns.uri("in-process-single"))
            except Exception as exc:
                outcome.failures["in-process", layout.label] = f"store did not start: {exc!r}"[:500]
                continue
            stack.callback(store.close)
            envs[layout.label] = Env(layout, args.store, store, Probe(None, ns.db_pids), api=build_api(store))
        store_bench.run_rounds(envs, lambda env: [scenario], api_run, args, "in-process", outcome)
        return measure_routing(envs["pooled-1"]) if "pooled-1" in envs else None


def start_server(layout: Layout, ns: Namespace, args: argparse.Namespace) -> servers.ServerProcess:
    if not layout.pools:
        return servers.start_zaqar(args.server_threads, message_store=args.store,
                                   store_uri=ns.uri("http-single"))
    uris = pool_uris(ns, "http", layout)
    return servers.start_zaqar(args.server_threads, pooling=True,
                               prepare=lambda state_dir: register_pools(state_dir / MANAGEMENT_FILE, uris))


def http_phase(args: argparse.Namespace, outcome: Outcome) -> None:
    scenario = PostScenario(args.queues, "post1-keepalive")
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(namespace(args.store, args, outcome.notes))
        envs: dict[str, Env] = {}
        for layout in LAYOUTS:
            try:
                server = start_server(layout, ns, args)
                stack.callback(server.stop)
                store: DataDriver
                if layout.pools:
                    store = pooled_store(server.state_dir / MANAGEMENT_FILE)
                else:
                    store = storage.load_data_driver(args.store, ns.uri("http-single"))
                stack.callback(store.close)
            except Exception as exc:
                outcome.failures["http", layout.label] = f"server did not start: {exc!r}"[:1500]
                continue
            log(f"  zaqar-server for {layout.label}: pid {server.pid} on {server.url}")
            envs[layout.label] = Env(layout, args.store, store, Probe(server.pid, ns.db_pids), server=server)
        store_bench.run_rounds(envs, lambda env: [scenario], http_run, args, "http", outcome)
        for label, env in envs.items():
            assert env.server is not None
            for problem in store_bench.server_log_problems(env.server):
                outcome.notes.append(f"{label}: {problem}")


# ----------------------------------------------------------------------------------------------------------
# Reporting.


def _runs(outcome: Outcome, phase: str) -> dict[str, list[Run]]:
    return {runs[0].scenario: runs for runs in outcome.runs.values() if runs[0].phase == phase}


def _per_round(a: Sequence[Run], b: Sequence[Run], value: Callable[[Run], float | None]) -> str:
    """Median and range of the round-by-round ratios (round i of ``a`` against round i of ``b``)."""
    ratios = [va / vb for ra, rb in zip(a, b, strict=False)
              if (va := value(ra)) is not None and (vb := value(rb))]
    if len(ratios) < 2:
        return ""
    return f" [{statistics.median(ratios):.2f}x, {min(ratios):.2f}-{max(ratios):.2f}]"


def ratio_lines(runs: dict[str, list[Run]]) -> list[str]:
    pairs = [(f"pooled-{n}", BASELINE) for n in (1, 2, 3)] + [("pooled-3", "pooled-1")]
    has_db = any(r.db_cpu is not None for rs in runs.values() for r in rs)
    lines = []
    for a, b in pairs:
        if a not in runs or b not in runs:
            continue
        ra, rb = store_bench.pooled(runs[a]), store_bench.pooled(runs[b])
        work_a, work_b = ra.per_msg(ra.work_cpu), rb.per_msg(rb.work_cpu)
        extra = "" if work_a is None or work_b is None else f"{(work_a - work_b) * 1000:+5.0f} us"
        line = (f"  {a + ' / ' + b:<20} msgs/s {ratio(ra.msg_per_s, rb.msg_per_s):>6}"
                f"{_per_round(runs[a], runs[b], lambda r: r.msg_per_s):<19}"
                f" CPU/msg {ratio(work_a, work_b):>6}"
                f"{_per_round(runs[a], runs[b], lambda r: r.per_msg(r.work_cpu)):<19} {extra:>8}")
        if has_db:
            line += (f"   sum CPU/msg {ratio(ra.per_msg(ra.sum_cpu), rb.per_msg(rb.sum_cpu)):>6}"
                     f"{_per_round(runs[a], runs[b], lambda r: r.per_msg(r.sum_cpu))}")
        lines.append(line.rstrip())
    return lines


def print_phase(outcome: Outcome, phase: str, title: str) -> None:
    runs = _runs(outcome, phase)
    if not runs:
        return
    print(f"\n{title}")
    store_bench.print_table([store_bench.pooled(rs) for rs in runs.values()])
    lines = ratio_lines(runs)
    if lines:
        work = "this process" if phase == "in-process" else "the server"
        has_db = any(r.db_cpu is not None for rs in runs.values() for r in rs)
        print(f"\nratios (same run; pooled over the rounds [median per-round ratio, min-max]); CPU/msg is "
              f"{work}'s, with the difference per message" + ("; sum adds Redis's CPU" if has_db else ""))
        for line in lines:
            print(line)
    print("\nper round: msgs/s | CPU ms/msg | queues per pool (catalog)")
    for label, rs in runs.items():
        rates = " ".join(f"{r.msg_per_s:.0f}" for r in rs)
        cpus = " ".join(fmt(r.per_msg(r.work_cpu), ".3f") for r in rs)
        spread = " | ".join(getattr(r, "placement", "") for r in rs)
        print(f"  {label:<9} {rates:<16} | {cpus:<20} | {spread}".rstrip(" |"))


def report(outcome: Outcome, args: argparse.Namespace, routing: Routing | None, elapsed: float) -> None:
    setting = (f"{args.store} pools; message_post 1 message, round-robin over {args.queues} queues; "
               f"{args.threads} threads, {args.seconds:g}s per scenario x {args.rounds} rounds (pooled)")
    print_phase(outcome, "in-process", f"in-process, API layer (Api.handle, no transport); {setting}")
    if routing is not None:
        print(f"\nrouting: one pooled message_post reads the catalog {routing.lookups_per_post}x; one "
              f"catalog.get (sqlite management store, 1 thread, {CATALOG_PROBES} calls) "
              f"{routing.wall_us:.1f} us wall, {routing.cpu_us:.1f} us CPU")
    print_phase(outcome, "http", f"HTTP, one zaqar-server per scenario ({args.server_threads or 'default'} "
                                 f"threads), POST 1 message per request, keep-alive; {setting}")
    store_bench.print_problems(outcome)
    print(f"\ntotal {elapsed:.0f} s")


# ----------------------------------------------------------------------------------------------------------
# Entry point.


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pool_bench",
        description="Message post throughput on one store and pooled over 1, 2 and 3 pools.")
    parser.add_argument("--store", choices=STORES, default="sqlite",
                        help="kind of every pool and of the single store (default sqlite)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of each scenario run (default 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every scenario this many times, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--queues", type=int, default=64,
                        help="queues posted to round-robin, fresh every run (default 64)")
    parser.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=True,
                        help="benchmark the API layer in this process (default on)")
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True,
                        help="also benchmark one zaqar-server per scenario over HTTP (default on)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="worker threads of the zaqar-servers (default 0: chosen by each store)")
    parser.add_argument("--redis-url", default=store_bench.DEFAULT_REDIS,
                        help=f"Redis server for --store redis (default {store_bench.DEFAULT_REDIS})")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.seconds <= 0 or args.queues < args.threads:
        parser.error("--threads and --rounds must be >= 1, --seconds > 0, --queues >= --threads")
    if not (args.in_process or args.http):
        parser.error("--no-in-process and --no-http leave nothing to run")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    outcome = Outcome()
    log(f"store: {args.store}; scenarios: {', '.join(layout.label for layout in LAYOUTS)}")
    routing = in_process_phase(args, outcome) if args.in_process else None
    if args.http:
        http_phase(args, outcome)
    report(outcome, args, routing, time.perf_counter() - started)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"store": args.store, "seconds": args.seconds, "threads": args.threads,
                       "rounds": args.rounds, "queues": args.queues,
                       "runs": [{**r.summary(), "placement": getattr(r, "placement", "")}
                                for runs in outcome.runs.values() for r in runs],
                       "routing": dataclasses.asdict(routing) if routing else None,
                       "failures": {f"{p} {s}": why for (p, s), why in outcome.failures.items()},
                       "notes": outcome.notes}, f, indent=2)
    bad = outcome.failures or any(r.problems for runs in outcome.runs.values() for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
