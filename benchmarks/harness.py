"""The benchmark harness of issue #9: every scenario on every transport, against the ceilings, per store.

    python -m benchmarks.harness [--store sqlite|redis|both] [--seconds S] [--rounds R] [--json PATH]
    python -m benchmarks.harness --url http://127.0.0.1:8888 --ws-url ws://127.0.0.1:9000 --pid PID

For each store it starts one ``zaqar-server`` serving HTTP and websocket
(``servers.start_zaqar``, so it follows whatever server the project ships; on
Redis under a key prefix of its own, deleted afterwards), or measures the one
given by ``--url``/``--ws-url``/``--pid``. The two bare-framework ceilings of
``ceilings.py`` are started once and measured beside zaqar in every round.

Scenarios (see benchmarks/README.md for the details): ``post1``, ``post10``
and ``consume`` on the four transports of ``transport_bench`` and their
ceilings, and on ``ws-json-deflate`` and ``ws-msgpack-deflate`` (permessage-deflate
negotiated; no ceiling); ``stats`` and ``list`` on HTTP keep-alive and both websocket
encodings and their ceilings; ``mixed`` (4 producers, 2 consumers and a stats
reader on one queue) on the same three; ``latency`` (post-to-delivery at a
fixed rate: websocket push subscribers in JSON and MessagePack, and a REST
poller); ``idle`` (``--connections`` idle websocket connections: server RSS
and threads). Each round runs every target of a scenario once, the order
rotating from round to round; the table shows the median of the rounds.

Why CPU per message: on a shared machine msgs/s moves with every other
process, while the CPU the server spends per message (utime+stime from /proc)
does not; Redis's own CPU is shown apart, since work moved into the store
would otherwise look like a saving.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from benchmarks import harness_report as report
from benchmarks import notify_bench, servers
from benchmarks.common import delete_prefix, is_local, log, redis_pids, with_query
from benchmarks.http_bench import Target
from benchmarks.transport_bench import (
    CEILING,
    CONSUME,
    DEFLATE_TRANSPORTS,
    MONITOR_INTERVAL,
    TRANSPORTS,
    Bench,
    Endpoint,
    Scenario,
    measure_connections,
    raise_fd_limit,
    round_order,
    start_ceilings,
    step_consume_or_wait,
    step_list,
    step_monitor,
    step_post,
    step_stats,
    zaqar_endpoints,
)
from zaqar.bootstrap import store_threads

PERSISTENT = ("http-keepalive", "ws-json", "ws-msgpack")
MIX = (step_post,) * 4 + (step_consume_or_wait,) * 2 + (step_monitor,)  # threads 0-3, 4-5, 6
PRODUCERS, CONSUMERS = 4, 2


@dataclasses.dataclass(frozen=True)
class Throughput:
    """A closed-loop scenario and the transports it runs on (and, with ``ceilings``, their ceilings)."""

    scenario: Scenario
    transports: tuple[str, ...]
    ceilings: bool = True


WITH_DEFLATE = TRANSPORTS + DEFLATE_TRANSPORTS
THROUGHPUT = (
    Throughput(Scenario("post1", (step_post,)), WITH_DEFLATE),
    Throughput(Scenario("post10", (step_post,), batch=10), WITH_DEFLATE),
    Throughput(Scenario(CONSUME.name, CONSUME.steps, prepare=CONSUME.prepare), WITH_DEFLATE),
    Throughput(Scenario("stats", (step_stats,), prepare="backlog"), PERSISTENT),
    Throughput(Scenario("list", (step_list,), prepare="queues"), PERSISTENT),
    Throughput(Scenario("mixed", MIX, prepare="backlog", threads=len(MIX), shared=True), PERSISTENT,
               ceilings=False),
)
LATENCY = ("ws-json-push", "ws-msgpack-push", "http-poll")
SCENARIOS = (*(t.scenario.name for t in THROUGHPUT), "latency", "idle")
STORES = ("sqlite", "redis")


def expected_rows(only: Sequence[str] = SCENARIOS, ceilings: bool = True) -> list[tuple[str, str]]:
    """(scenario, target) of every table row a run of the ``only`` scenarios prints, in table order."""
    rows = []
    for t in THROUGHPUT:
        if t.scenario.name in only:
            with_ceiling = [x for x in t.transports if x in TRANSPORTS] if t.ceilings and ceilings else []
            bare = tuple(CEILING + x for x in with_ceiling)
            rows += [(t.scenario.name, x) for x in t.transports + bare]
    if "latency" in only:
        rows += [("latency", x) for x in LATENCY]
    return rows


@dataclasses.dataclass
class Zaqar:
    """The server under test, on 127.0.0.1 (``notify_bench.Listening``)."""

    port: int
    websocket_port: int
    pid: int
    store_pids: Callable[[], Sequence[int]]


def threads_for(store: str, args: argparse.Namespace) -> int:
    """``--server-threads``, or what zaqar-server itself runs on ``store`` when told 0."""
    return args.server_threads or store_threads(store)


def _store_pids(store: str, args: argparse.Namespace) -> Callable[[], Sequence[int]]:
    pids = redis_pids() if store == "redis" and is_local(args.redis_url) else ()
    return lambda: pids


@contextlib.contextmanager
def zaqar_under_test(store: str, args: argparse.Namespace, notes: list[str]) -> Iterator[Zaqar]:
    """The given server, or a fresh zaqar-server on ``store`` (Redis: a key prefix deleted afterwards)."""
    if args.url:
        yield Zaqar(urlsplit(args.url).port or 80, urlsplit(args.ws_url).port or 80, args.pid,
                    _store_pids(store, args))
        return
    prefix = f"zaqar-harness-{uuid.uuid4().hex}:" if store == "redis" else ""
    uri = with_query(args.redis_url, f"prefix={quote(prefix)}") if prefix else None
    try:
        server = servers.start_zaqar(threads_for(store, args), websocket=True,
                                     message_store="redis" if prefix else None, store_uri=uri)
        assert server.websocket_port is not None
        log(f"[{store}] zaqar-server pid {server.pid}: {server.url}, ws://127.0.0.1:{server.websocket_port}/")
        try:
            yield Zaqar(server.port, server.websocket_port, server.pid, _store_pids(store, args))
        finally:
            server.stop()
    finally:
        if prefix:
            delete_prefix(args.redis_url, prefix, notes)


def _latency_scenario(name: str, poll_interval: float) -> notify_bench.Scenario:
    if name == "http-poll":
        return notify_bench.Scenario(name, f"GET every {poll_interval:g} s", interval=poll_interval)
    return notify_bench.Scenario(name, "websocket push", binary=name.startswith("ws-msgpack"))


def _attempt(row: report.Row, notes: list[str], run: Callable[[], report.Sample]) -> None:
    """One run into ``row``; a run that fails is recorded as failed (an error, no figures) and the
    harness goes on, so one broken scenario does not cost the figures of all the others."""
    try:
        row.samples.append(run())
    except Exception as exc:  # reported in the table, the notes and the exit status
        log(f"  FAILED: {exc!r}")
        notes.append(f"FAILED {row.scenario}/{row.target} (round {len(row.samples) + 1}): {exc!r}"[:500])
        row.samples.append(report.failed(exc))


def run_store(store: str, args: argparse.Namespace, ceilings: dict[str, Endpoint]) -> dict[str, Any]:
    """Every selected scenario on one store, ``args.rounds`` interleaved rounds; the store's report."""
    notes: list[str] = []
    rows = {key: report.Row(*key) for key in expected_rows(args.only, args.ceilings)}
    idle = None
    with zaqar_under_test(store, args, notes) as zq:
        endpoints = zaqar_endpoints(Target("127.0.0.1", zq.port, zq.pid), zq.websocket_port, zq.store_pids,
                                    deflate=True)
        bench = Bench({**endpoints, **ceilings}, args.concurrency, args.seconds)

        def latency(name: str) -> report.Sample:
            timing = argparse.Namespace(rate=args.rate, seconds=args.latency_seconds)
            sc = _latency_scenario(name, args.poll_interval)
            result = notify_bench.run_scenario(sc, zq, timing, log, zq.store_pids)
            return report.from_latency(result, args.latency_seconds)

        if "idle" in args.only:  # first, on a fresh server: RSS not yet grown by the other scenarios
            idle = measure_connections("127.0.0.1", zq.websocket_port, zq.pid, args.connections,
                                       args.concurrency, 2 * threads_for(store, args), log)
        for rnd in range(args.rounds):
            for t in (t for t in THROUGHPUT if t.scenario.name in args.only):
                targets = [x for key, x in rows if key == t.scenario.name]
                for target in round_order(targets, rnd, args.rounds):
                    log(f"[{store}] round {rnd + 1}/{args.rounds}: {t.scenario.name} over {target}")
                    _attempt(rows[t.scenario.name, target], notes,
                             lambda t=t, target=target: report.from_throughput(bench.run(t.scenario, target)))
            for name in round_order(LATENCY, rnd, args.rounds) if "latency" in args.only else ():
                log(f"[{store}] round {rnd + 1}/{args.rounds}: latency, {name}")
                _attempt(rows["latency", name], notes, lambda name=name: latency(name))
    ordered = list(rows.values())
    return {"store": store, "rows": ordered, "idle": idle, "notes": notes,
            "targets": report.evaluate(ordered, idle, args.connections)}


# ----------------------------------------------------------------------------------------------------------
# Output.


def print_store(rep: dict[str, Any], args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    rows: list[report.Row] = rep["rows"]
    where = args.url or f"zaqar-server ({threads_for(rep['store'], args)} HTTP threads / websocket workers)"
    out(f"\n== store {rep['store']}: {where}; {args.concurrency} client threads, {args.seconds:g} s per run, "
        f"{args.rounds} interleaved round{'s' if args.rounds > 1 else ''}; figures: median of the rounds")
    out(report.HEADER_NOTE)
    report.print_table(rows, out)
    for r in rows:
        if r.scenario == "mixed":
            out(f"  mixed/{r.target}: {_mix_split(r)}")
    if any(r.scenario == "latency" for r in rows):
        out(f"  latency: one message every {1 / args.rate * 1000:g} ms for {args.latency_seconds:g} s per "
            f"round; http-poll GETs every {args.poll_interval:g} s")
    if rep["idle"] is not None:
        out(_idle_line(rep["idle"]))
    report.print_ceiling_ratios(rows, out)
    report.print_deflate_ratios(rows, out)
    report.print_targets(rep["targets"], args.rounds, out)
    for note in rep["notes"]:
        out(note if note.startswith("FAILED") else f"cleanup: {note}")


def _mix_split(row: report.Row) -> str:
    """Posted and consumed msgs/s of the mixed workload (medians of the rounds)."""
    posted, consumed = [], []
    for s in row.samples:
        per_thread = s.extra.get("thread_messages") or [0]
        total = sum(per_thread) or 1
        posted.append(s.msg_per_s * sum(per_thread[:PRODUCERS]) / total)
        consumed.append(s.msg_per_s * sum(per_thread[PRODUCERS:PRODUCERS + CONSUMERS]) / total)
    return (f"posted {statistics.median(posted):.0f} msgs/s by {PRODUCERS} producers, consumed "
            f"{statistics.median(consumed):.0f} msgs/s by {CONSUMERS} consumers (claim 10 + delete each), "
            f"1 stats reader every {MONITOR_INTERVAL * 1000:g} ms")


def _idle_line(idle: dict[str, Any]) -> str:
    rss, threads, n = idle["rss_kb"], idle["threads"], idle["connections"]
    return (f"idle {n} websocket connections: server RSS {rss['before'] / 1024:.1f} -> "
            f"{rss['open'] / 1024:.1f} MB "
            f"(+{(rss['open'] - rss['before']) / 1024:.1f} MB, {idle['rss_kb_per_connection']:.1f} KB each), "
            f"threads {threads['before']} -> {threads['open']}, fds {idle['fds']['before']} -> "
            f"{idle['fds']['open']}; {idle['handshakes_per_s']:.0f} handshakes/s")


def as_json(reports: Sequence[dict[str, Any]], args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    return {"args": vars(args), "seconds_total": elapsed,
            "stores": [{**rep, "rows": [r.as_dict() for r in rep["rows"]]} for rep in reports]}


# ----------------------------------------------------------------------------------------------------------
# Entry point.


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=(*STORES, "both"), default="both",
                        help="message store of the server started (default both, one after the other); with "
                             "--url, the store that server uses (for the store CPU column)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="duration of each throughput run (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds: every target of a scenario once per round (default 3)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="client threads per throughput run (default 4; mixed uses 7)")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})")
    parser.add_argument("--rate", type=float, default=100.0, help="latency: messages posted per second (100)")
    parser.add_argument("--latency-seconds", type=float, default=5.0,
                        help="latency: posting time per target and round (default 5)")
    parser.add_argument("--poll-interval", type=float, default=0.1,
                        help="latency: the REST poller's interval in seconds (default 0.1)")
    parser.add_argument("--connections", type=int, default=1000, help="idle: websocket connections (1000)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="HTTP threads and websocket workers of the zaqar-server started, and of the "
                             "ceilings (default 0: what zaqar-server runs on each store, 2 on SQLite, 4 on "
                             "Redis)")
    parser.add_argument("--ceilings", action=argparse.BooleanOptionalAction, default=True,
                        help="run the bare-framework ceilings beside zaqar (default on)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for --store redis")
    parser.add_argument("--url", help="measure this running zaqar-server's HTTP (on 127.0.0.1) ...")
    parser.add_argument("--ws-url", help="... and its websocket listener ...")
    parser.add_argument("--pid", type=int, help="... whose CPU, RSS and threads are read from /proc")
    parser.add_argument("--json", metavar="PATH", help="also write every figure, per round, as JSON to PATH")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(args.only) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.url or args.ws_url or args.pid:
        if not (args.url and args.ws_url and args.pid):
            parser.error("--url, --ws-url and --pid go together")
        if args.store == "both" or urlsplit(args.url).hostname != notify_bench.HOST:
            parser.error("with --url: a server on 127.0.0.1, and --store sqlite or redis (the one it uses)")
    if min(args.seconds, args.rate, args.latency_seconds, args.poll_interval) <= 0 or min(
            args.rounds, args.concurrency, args.connections) < 1:
        parser.error("durations, --rate and --poll-interval must be > 0; --rounds, --concurrency and "
                     "--connections >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if "idle" in args.only:
        raise_fd_limit(2 * args.connections + 256)  # before the servers start: they inherit it
    stores = STORES if args.store == "both" else (args.store,)
    reports = []
    running: list[servers.ServerProcess] = []
    try:
        for store in stores:
            # NOTE: the ceilings run as many threads as the zaqar-server they are measured beside.
            ceilings = start_ceilings(threads_for(store, args), running, log) if args.ceilings else {}
            reports.append(run_store(store, args, ceilings))
            print_store(reports[-1], args)
            while running:
                running.pop().stop()
    finally:
        for server in running:
            server.stop()
    elapsed = time.perf_counter() - started
    print(f"\ntotal {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(as_json(reports, args, elapsed), f, indent=2)
    failed = sum(1 for rep in reports for note in rep["notes"] if note.startswith("FAILED"))
    if failed:
        log(f"{failed} runs failed (see FAILED above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
