"""Per-driver message store benchmark: sqlite (synchronous=full and =normal), redis, sqlalchemy.

    python -m benchmarks.store_bench [--seconds S] [--threads N] [--rounds R]
                                     [--drivers sqlite,redis,sqlalchemy] [--http | --no-http]
                                     [--redis-url URL] [--sql-url URL] [--no-analyze] [--json PATH]

Phase 1 drives the API layer in-process (``Api(Context(store=driver)).handle``, no
transport) with ``--threads`` threads: post 1 message per call, post 10 per call,
consume (claim 10, delete each with its claim id) with one queue per thread, and
the same consume with all threads on one shared queue. Figures: calls/s, msgs/s,
p50/p99 per call, CPU ms per message of this process (``time.process_time``) and
of the database server, from ``/proc`` when it runs on this machine: every
``redis-server`` process; the PostgreSQL backends of our sessions (marked with
``application_name``) plus the WAL writer, checkpointer and background writer.
With ``--analyze`` (default) the PostgreSQL tables are ANALYZEd after each
untimed setup, as autovacuum would do on a long-running server.

Phase 2 (``--http``, default on) starts one ``zaqar-server`` per store (HTTP only,
free port, temporary state dir) and runs ``http_bench``'s keep-alive POST-1 and
claim+delete clients against each: msgs/s and server (and database) CPU ms per
message.

Every store runs in a namespace of its own, removed at the end: a temporary
directory for sqlite, a fresh key prefix on Redis (its keys deleted afterwards),
a fresh PostgreSQL schema (dropped afterwards). Stores are interleaved
scenario by scenario in every round, the order rotating per round, so machine
noise hits them alike. After every run the queues are counted through the
store: messages posted, or deleted, must match what the clients were told;
mismatches, error replies and hung calls are reported per store.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks import http_bench, servers
from benchmarks.common import (
    Measured,
    Probe,
    Recorder,
    delete_prefix,
    fmt,
    is_local,
    log,
    percentile,
    ratio,
    redis_pids,
    timed,
    with_query,
)
from zaqar import storage
from zaqar.api import Api, Context, Request
from zaqar.storage.base import DataDriver, MessageDraft, QueueStats

PROJECT = http_bench.PROJECT
TTL = http_bench.TTL
FILL_CHUNK = 200  # messages per store call when pre-filling (untimed, directly on the store)
DEFAULT_REDIS = os.environ.get("ZAQAR_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
DEFAULT_SQL = os.environ.get("ZAQAR_TEST_SQL_URL") or "postgresql://postgres@127.0.0.1:5432/zaqar_test"


# ----------------------------------------------------------------------------------------------------------
# Stores and their private namespaces.


@dataclasses.dataclass(frozen=True)
class Backend:
    label: str  # row name
    driver: str  # [drivers] message_store
    synchronous: str = ""  # sqlite only


BACKENDS = {
    "sqlite-full": Backend("sqlite-full", "sqlite", "full"),
    "sqlite-normal": Backend("sqlite-normal", "sqlite", "normal"),
    "redis": Backend("redis", "redis"),
    "sqlalchemy": Backend("sqlalchemy", "sqlalchemy"),
}
ALIASES = {"sqlite": ("sqlite-full", "sqlite-normal"), "postgresql": ("sqlalchemy",)}
BASELINE = "sqlite-full"


@dataclasses.dataclass
class Space:
    """A store URI in a namespace of its own, and what the benchmark may do with it."""

    uri: str
    db_pids: Callable[[], Sequence[int]] = tuple  # database server processes to charge CPU to
    analyze: Callable[[], None] = lambda: None  # refresh the planner statistics (PostgreSQL)


@contextlib.contextmanager
def namespace(backend: Backend, args: argparse.Namespace, notes: list[str]) -> Iterator[Space]:
    """A namespace nobody else uses; removed (and the removal noted) afterwards."""
    if backend.driver == "sqlite":
        where = Path(tempfile.mkdtemp(prefix=f"zaqar-store-bench-{backend.label}-"))
        try:
            yield Space(f"sqlite:///{where / 'zaqar.sqlite'}?synchronous={backend.synchronous}")
        finally:
            shutil.rmtree(where, ignore_errors=True)
    elif backend.driver == "redis":
        with _redis_namespace(args.redis_url, notes) as space:
            yield space
    else:
        with _sql_namespace(args.sql_url, notes, args.analyze) as space:
            yield space


@contextlib.contextmanager
def _redis_namespace(base: str, notes: list[str]) -> Iterator[Space]:

    prefix = f"zaqar-bench-{uuid.uuid4().hex}:"
    pids = redis_pids() if is_local(base) else ()
    try:
        yield Space(with_query(base, f"prefix={quote(prefix)}"), lambda: pids)
    finally:
        delete_prefix(base, prefix, notes)


# PostgreSQL processes whose work our sessions cause: WAL flushes, dirty-buffer writes.
_PG_HELPERS = ("walwriter", "checkpointer", "background writer")


@contextlib.contextmanager
def _sql_namespace(base: str, notes: list[str], analyze: bool) -> Iterator[Space]:
    import sqlalchemy

    schema = f"zaqar_bench_{uuid.uuid4().hex}"
    engine = sqlalchemy.create_engine(base, poolclass=sqlalchemy.pool.NullPool)
    tables = ", ".join(f'"{schema}".{table}' for table in ("queues", "messages", "claims"))

    def run_analyze() -> None:
        if analyze:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text(f"ANALYZE {tables}"))

    def backend_pids() -> list[int]:
        with engine.connect() as conn:
            return list(conn.execute(
                sqlalchemy.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"
                                " OR backend_type = ANY(:helpers)"),
                {"name": schema, "helpers": list(_PG_HELPERS)}).scalars())

    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
        try:
            # application_name marks our sessions (the store's and the server's) in pg_stat_activity
            uri = with_query(base, f"options={quote(f'-csearch_path={schema}')}&application_name={schema}")
            yield Space(uri, backend_pids if is_local(base) else tuple, run_analyze)
        finally:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text("SET LOCAL lock_timeout = '20s'"))
                conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
            notes.append(f"sqlalchemy: dropped schema {schema}")
    except Exception as exc:
        notes.append(f"sqlalchemy: schema {schema}: FAILED: {exc!r}"[:500])
        raise
    finally:
        engine.dispose()


@dataclasses.dataclass
class Rec(Recorder):
    ids: list[str] = dataclasses.field(default_factory=list)  # deleted message ids (in-process consume)


@dataclasses.dataclass
class Run:
    phase: str
    scenario: str
    store: str
    seconds: float
    ops: int
    msgs: int
    errors: int
    latencies: list[float]
    own_cpu: float
    server_cpu: float | None
    db_cpu: float | None
    drained: bool
    problems: list[str]
    depth: float = 0.0  # messages per queue when the clock started

    @property
    def msg_per_s(self) -> float:
        return self.msgs / self.seconds if self.seconds else 0.0

    @property
    def op_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def per_msg(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.msgs else cpu * 1000 / self.msgs

    @property
    def work_cpu(self) -> float | None:
        """CPU of what does the work: this process in-process, the server over HTTP."""
        return self.own_cpu if self.phase == "in-process" else self.server_cpu

    @property
    def sum_cpu(self) -> float | None:
        work = self.work_cpu
        if work is None:
            return None
        return work + (self.db_cpu or 0.0)

    def pct(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.seconds else 100 * cpu / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        return percentile(sorted(self.latencies), fraction) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "phase": self.phase, "scenario": self.scenario, "store": self.store, "seconds": self.seconds,
            "ops": self.ops, "msgs": self.msgs, "errors": self.errors, "msg_per_s": self.msg_per_s,
            "op_per_s": self.op_per_s, "p50_ms": self.percentile_ms(0.5), "p99_ms": self.percentile_ms(0.99),
            "own_cpu_s": self.own_cpu, "server_cpu_s": self.server_cpu, "db_cpu_s": self.db_cpu,
            "work_ms_per_msg": self.per_msg(self.work_cpu), "db_ms_per_msg": self.per_msg(self.db_cpu),
            "drained": self.drained, "problems": self.problems, "queue_depth_at_start": self.depth,
        }


def pooled(runs: Sequence[Run]) -> Run:
    def total(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    first = runs[0]
    return Run(first.phase, first.scenario, first.store, sum(r.seconds for r in runs),
               sum(r.ops for r in runs), sum(r.msgs for r in runs), sum(r.errors for r in runs),
               [x for r in runs for x in r.latencies],
               sum(r.own_cpu for r in runs), total([r.server_cpu for r in runs]),
               total([r.db_cpu for r in runs]), any(r.drained for r in runs),
               [p for r in runs for p in r.problems], sum(r.depth for r in runs) / len(runs))


def stats_of(store: DataDriver, queues: Sequence[str]) -> dict[str, QueueStats]:
    return {q: store.queues.stats(PROJECT, q) for q in dict.fromkeys(queues)}


def mean_depth(stats: dict[str, QueueStats]) -> float:
    return sum(s.total for s in stats.values()) / len(stats) if stats else 0.0


def count_problems(sign: int, queues: Sequence[str], recs: Sequence[Rec], before: dict[str, QueueStats],
                   after: dict[str, QueueStats]) -> list[str]:
    """``sign`` +1: the queues must have grown by the messages posted; -1: shrunk by those deleted."""
    problems = []
    for q in before:
        told = sum(rec.messages for qq, rec in zip(queues, recs, strict=True) if qq == q)
        change = after[q].total - before[q].total
        if change != sign * told:
            what = "posted" if sign > 0 else "deleted"
            problems.append(f"queue {q}: clients were told {told} messages {what}, the queue's total "
                            f"changed by {change} ({before[q].total} -> {after[q].total})")
        if after[q].claimed:
            problems.append(f"queue {q}: {after[q].claimed} messages still claimed after the run")
    seen: set[str] = set()
    dups = []
    for message_id in (i for rec in recs for i in rec.ids):
        if message_id in seen:
            dups.append(message_id)
        seen.add(message_id)
    if dups:
        problems.append(f"{len(dups)} message ids deleted twice (claimed by two claims?), e.g. {dups[:3]}")
    return problems


def rec_problems(measured: Measured) -> list[str]:
    problems = list(measured.failures)
    errors = [r.first_error for r in measured.recs if r.first_error]
    if errors:
        problems.append(f"{sum(r.errors for r in measured.recs)} error replies, first: {errors[0]}")
    elif any(r.errors for r in measured.recs):
        problems.append(f"{sum(r.errors for r in measured.recs)} replies with an unexpected status")
    return problems


# ----------------------------------------------------------------------------------------------------------
# Phase 1: in-process through the API layer.


def _draft(thread: int, seq: int) -> dict[str, Any]:
    """The ~100-byte message of http_bench."""
    return {"ttl": TTL, "body": {"event": "bench", "thread": thread, "seq": seq, "data": "x" * 64}}


@dataclasses.dataclass
class Env:
    """One store in phase 1."""

    backend: Backend
    space: Space
    store: DataDriver
    api: Api
    probe: Probe
    post1_rate: float = 2000.0  # msgs/s of the last post1 run: sizes the consume pre-fills
    epoch: int = 0
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:8])

    def queue(self, scenario: str, thread: int) -> str:
        return f"bench-{self.run_id}-{self.epoch}-{scenario}-{thread}"


@dataclasses.dataclass
class ApiState:
    queue: str
    client_id: str
    request: Request


class ApiScenario:
    name = ""
    title = ""
    sign = 1  # +1 posts, -1 consumes

    def setup(self, env: Env, threads: int, seconds: float) -> list[ApiState]:
        raise NotImplementedError

    def step(self, env: Env, state: ApiState, rec: Rec) -> bool:
        raise NotImplementedError


class Post(ApiScenario):
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.name = f"post{batch}"
        self.title = f"message_post, {batch} message{'s' if batch > 1 else ''} per call"

    def setup(self, env: Env, threads: int, seconds: float) -> list[ApiState]:
        states = []
        for i in range(threads):
            queue, client_id = env.queue(self.name, i), str(uuid.uuid4())
            params = {"queue_name": queue, "messages": [_draft(i, k) for k in range(self.batch)]}
            state = ApiState(queue, client_id, Request("message_post", PROJECT, client_id, params))
            resp = env.api.handle(state.request)  # creates the queue before the clock starts
            if resp.status != 201:
                raise RuntimeError(f"setup post on {queue}: {resp.status} {resp.body}")
            states.append(state)
        return states

    def step(self, env: Env, state: ApiState, rec: Rec) -> bool:
        started = time.perf_counter()
        resp = env.api.handle(state.request)
        rec.latencies.append(time.perf_counter() - started)
        if resp.status == 201 and len(resp.data) == self.batch:
            rec.requests += 1
            rec.messages += self.batch
        else:
            rec.error(f"message_post -> {resp.status} {resp.body}")
        return True


def fill_store(store: DataDriver, queue: str, count: int, client_id: str) -> None:
    for start in range(0, count, FILL_CHUNK):
        stop = min(count, start + FILL_CHUNK)
        drafts = [MessageDraft(_draft(0, k)["body"], TTL) for k in range(start, stop)]
        store.messages.post(PROJECT, queue, drafts, client_id)


class Consume(ApiScenario):
    """claim_create limit 10, then message_delete of each claimed message with the claim id."""

    sign = -1
    # Every store starts from the same depth: 2.5x the fastest store's POST-1 msgs/s (this run) x
    # seconds, over the queues; consuming is at most ~2x faster than POST-1. A drained queue is flagged.
    prefill_factor = 2.5

    def __init__(self, shared: bool, fastest_post1: Callable[[], float] = lambda: 2000.0) -> None:
        self.shared = shared
        self.fastest_post1 = fastest_post1
        self.name = "consume-shared" if shared else "consume"
        self.title = ("claim 10 + delete each, all threads on one queue" if shared
                      else "claim 10 + delete each, one queue per thread")

    def setup(self, env: Env, threads: int, seconds: float) -> list[ApiState]:
        queues = [env.queue(self.name, 0 if self.shared else i) for i in range(threads)]
        total = int(self.fastest_post1() * seconds * self.prefill_factor) + 100 * threads
        per_queue = total if self.shared else total // threads
        for queue in dict.fromkeys(queues):
            fill_store(env.store, queue, per_queue, str(uuid.uuid4()))
        states = []
        for queue in queues:
            client_id = str(uuid.uuid4())
            params = {"queue_name": queue, "limit": 10, "ttl": 300, "grace": 60}
            states.append(ApiState(queue, client_id, Request("claim_create", PROJECT, client_id, params)))
        return states

    def step(self, env: Env, state: ApiState, rec: Rec) -> bool:
        started = time.perf_counter()
        resp = env.api.handle(state.request)
        rec.latencies.append(time.perf_counter() - started)
        if resp.status == 204:
            rec.drained = True
            return False
        if resp.status != 201:
            rec.error(f"claim_create -> {resp.status} {resp.body}")
            return True
        rec.requests += 1
        claim_id, claimed = resp.data
        for message in claimed:
            params = {"queue_name": state.queue, "message_id": message.id, "claim_id": claim_id}
            started = time.perf_counter()
            deleted = env.api.handle(Request("message_delete", PROJECT, state.client_id, params))
            rec.latencies.append(time.perf_counter() - started)
            if deleted.status == 204:
                rec.requests += 1
                rec.messages += 1
                rec.ids.append(message.id)
            else:
                rec.error(f"message_delete {message.id} claim {claim_id} -> {deleted.status} {deleted.body}")
        return True


def api_run(scenario: ApiScenario, env: Env, threads: int, seconds: float) -> Run:
    env.epoch += 1
    states = scenario.setup(env, threads, seconds)
    queues = [s.queue for s in states]
    env.space.analyze()
    before = stats_of(env.store, queues)
    m = timed(lambda i, rec: scenario.step(env, states[i], rec), threads, seconds, env.probe, Rec)
    after = stats_of(env.store, queues)
    problems = rec_problems(m) + count_problems(scenario.sign, queues, m.recs, before, after)
    run = Run("in-process", scenario.name, env.backend.label, m.seconds, sum(r.requests for r in m.recs),
              sum(r.messages for r in m.recs), sum(r.errors for r in m.recs),
              [x for r in m.recs for x in r.latencies], m.own_cpu, None, m.db_cpu,
              any(r.drained for r in m.recs), problems, mean_depth(before))
    if scenario.name == "post1" and run.msgs:
        env.post1_rate = run.msg_per_s
    return run


# ----------------------------------------------------------------------------------------------------------
# Phase 2: one zaqar-server per store, http_bench's clients.


@dataclasses.dataclass
class HttpEnv:
    backend: Backend
    space: Space
    server: servers.ServerProcess
    store: DataDriver  # the server's store, opened here too, to count queues
    target: http_bench.Target
    probe: Probe
    post1_rate: float = 1000.0


def http_scenarios(fastest_post1: float) -> list[http_bench.Scenario]:
    """POST-1 and claim+delete; every store's claim queues start equally deep (see Consume)."""
    claim = http_bench.ClaimDelete()
    claim.expected_rate = max(200.0, 1.5 * fastest_post1)  # its setup fills 1.5x this x seconds
    return [http_bench.PostKeepAlive(1), claim]


def http_run(scenario: http_bench.Scenario, env: HttpEnv, threads: int, seconds: float) -> Run:
    env.target.epoch += 1
    states = [scenario.setup(env.target, i, threads, seconds) for i in range(threads)]
    queues = [env.target.queue(scenario.name, i) for i in range(threads)]
    try:
        env.space.analyze()
        before = stats_of(env.store, queues)
        m = timed(lambda i, rec: scenario.step(states[i], rec), threads, seconds, env.probe, Rec)
    finally:
        for state in states:
            scenario.teardown(state)
    after = stats_of(env.store, queues)
    sign = -1 if isinstance(scenario, http_bench.ClaimDelete) else 1
    problems = rec_problems(m) + count_problems(sign, queues, m.recs, before, after)
    run = Run("http", scenario.name, env.backend.label, m.seconds, sum(r.requests for r in m.recs),
              sum(r.messages for r in m.recs), sum(r.errors for r in m.recs),
              [x for r in m.recs for x in r.latencies], m.own_cpu, m.server_cpu, m.db_cpu,
              any(r.drained for r in m.recs), problems, mean_depth(before))
    if isinstance(scenario, http_bench.PostKeepAlive) and run.msgs:
        env.post1_rate = run.msg_per_s
    return run


def server_log_problems(server: servers.ServerProcess) -> list[str]:
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return [f"server log unreadable: {exc}"]
    bad = [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln or ln.startswith("Traceback")]
    warnings = [ln for ln in lines if " WARNING " in ln]
    out = []
    if bad:
        out.append(f"server log: {len(bad)} ERROR/Traceback lines, first: {bad[0][:300]}")
    if warnings:
        out.append(f"server log: {len(warnings)} WARNING lines, first: {warnings[0][:300]}")
    return out


# ----------------------------------------------------------------------------------------------------------
# Orchestration: rounds, scenario by scenario, stores in a rotating order.


@dataclasses.dataclass
class Outcome:
    runs: dict[tuple[str, str], list[Run]] = dataclasses.field(default_factory=dict)  # (scenario, store)
    failures: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # (phase, store) -> why
    notes: list[str] = dataclasses.field(default_factory=list)


def run_rounds(envs: dict[str, Any], scenarios_for: Callable[[Any], Sequence[Any]],
               run_one: Callable[[Any, Any, int, float], Run], args: argparse.Namespace, phase: str,
               outcome: Outcome) -> None:
    labels = list(envs)
    names = [sc.name for sc in scenarios_for(envs[labels[0]])] if labels else []
    for rnd in range(args.rounds):
        order = labels[rnd % len(labels):] + labels[:rnd % len(labels)] if labels else []
        for index, name in enumerate(names):
            for label in order:
                if (phase, label) in outcome.failures:
                    continue
                scenario = scenarios_for(envs[label])[index]
                log(f"  [{phase}] round {rnd + 1}/{args.rounds} {name:<15} {label}")
                try:
                    run = run_one(scenario, envs[label], args.threads, args.seconds)
                except Exception as exc:  # a hang, or a failure outside the timed calls: drop the store
                    why = f"{name} round {rnd + 1}: {exc!r}"[:500]
                    outcome.failures[phase, label] = why
                    log(f"    DROPPED {label} ({phase}): {why}")
                    continue
                outcome.runs.setdefault((name, label), []).append(run)
                for problem in run.problems:
                    log(f"    PROBLEM {label}: {problem}")


def in_process_phase(backends: Sequence[Backend], args: argparse.Namespace, outcome: Outcome) -> None:
    scenarios: list[ApiScenario] = [Post(1), Post(10), Consume(shared=False), Consume(shared=True)]
    with contextlib.ExitStack() as stack:
        envs: dict[str, Env] = {}
        for b in backends:
            try:
                space = stack.enter_context(namespace(b, args, outcome.notes))
                store = storage.load_data_driver(b.driver, space.uri)
            except Exception as exc:
                outcome.failures["in-process", b.label] = f"store did not start: {exc!r}"[:500]
                continue
            stack.callback(store.close)
            envs[b.label] = Env(b, space, store, Api(Context(store=store)), Probe(None, space.db_pids))
        for scenario in scenarios:
            if isinstance(scenario, Consume):
                scenario.fastest_post1 = lambda: max(e.post1_rate for e in envs.values())
        run_rounds(envs, lambda env: scenarios, api_run, args, "in-process", outcome)


def http_phase(backends: Sequence[Backend], args: argparse.Namespace, outcome: Outcome) -> None:
    with contextlib.ExitStack() as stack:
        envs: dict[str, HttpEnv] = {}
        for b in backends:
            try:
                space = stack.enter_context(namespace(b, args, outcome.notes))
                server = servers.start_zaqar(args.server_threads, message_store=b.driver, store_uri=space.uri)
                stack.callback(server.stop)
                store = storage.load_data_driver(b.driver, space.uri)
                stack.callback(store.close)
            except Exception as exc:
                outcome.failures["http", b.label] = f"server did not start: {exc!r}"[:1500]
                continue
            log(f"  zaqar-server for {b.label}: pid {server.pid} on {server.url}")
            target = http_bench.Target("127.0.0.1", server.port, server.pid)
            envs[b.label] = HttpEnv(b, space, server, store, target, Probe(server.pid, space.db_pids))
        run_rounds(envs, lambda env: http_scenarios(max(e.post1_rate for e in envs.values())), http_run, args,
                   "http", outcome)
        for label, env in envs.items():
            for problem in server_log_problems(env.server):
                outcome.notes.append(f"{label}: {problem}")


# ----------------------------------------------------------------------------------------------------------
# Reporting.


def _rows(outcome: Outcome, phase: str) -> list[Run]:
    return [pooled(runs) for runs in outcome.runs.values() if runs[0].phase == phase]


def print_table(rows: Sequence[Run], out: Callable[[str], None] = print) -> None:
    """In-process rows: ``cpu`` is this process. HTTP rows: ``srv`` the server, ``gen`` the clients."""
    http = bool(rows) and rows[0].phase == "http"
    work, ops = ("srv", "req/s") if http else ("cpu", "calls/s")
    head = (f"{'scenario':<15} {'store':<14} {ops:>7} {'msgs/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
            f"{work + ' ms/msg':>10} {'db ms/msg':>9} {'sum ms/msg':>10} {work + '%':>5} {'db%':>5}"
            + (f" {'gen%':>5}" if http else "") + f" {'errors':>6}  check")
    out(head)
    out("-" * len(head))
    for r in rows:
        cells = [f"{r.scenario:<15} {r.store:<14} {r.op_per_s:>7.0f} {r.msg_per_s:>7.0f}",
                 f"{r.percentile_ms(0.5):>7.2f} {r.percentile_ms(0.99):>7.2f}",
                 f"{fmt(r.per_msg(r.work_cpu), '.3f'):>10} {fmt(r.per_msg(r.db_cpu), '.3f'):>9}",
                 f"{fmt(r.per_msg(r.sum_cpu), '.3f'):>10}",
                 f"{fmt(r.pct(r.work_cpu), '.0f'):>5} {fmt(r.pct(r.db_cpu), '.0f'):>5}"]
        if http:
            cells.append(f"{fmt(r.pct(r.own_cpu), '.0f'):>5}")
        out(" ".join(cells) + f" {r.errors:>6}  {_check(r)}")


def _check(r: Run) -> str:
    if r.problems:
        return f"FAIL ({len(r.problems)})"
    return "ok (queue drained)" if r.drained else "ok"


def print_ratios(rows: Sequence[Run], out: Callable[[str], None] = print) -> None:
    by = {(r.scenario, r.store): r for r in rows}
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    if not any((s, BASELINE) in by for s in scenarios):
        return
    out(f"\nrelative to {BASELINE} (msgs/s: higher is faster; CPU/msg: lower is cheaper; "
        "sum = work + database server)")
    for s in scenarios:
        base = by.get((s, BASELINE))
        if base is None:
            continue
        for r in rows:
            if r.scenario != s or r.store == BASELINE:
                continue
            out(f"  {s:<15} {r.store:<14} msgs/s {ratio(r.msg_per_s, base.msg_per_s):>6}   "
                f"CPU/msg {ratio(r.per_msg(r.work_cpu), base.per_msg(base.work_cpu)):>6}   "
                f"sum CPU/msg {ratio(r.per_msg(r.sum_cpu), base.per_msg(base.sum_cpu)):>6}")


def print_rounds(outcome: Outcome, phase: str, out: Callable[[str], None] = print) -> None:
    out("\nper round: msgs/s | CPU ms/msg (work) | consume: messages per queue when the clock started")
    for (scenario, store), runs in outcome.runs.items():
        if runs[0].phase != phase:
            continue
        rates = " ".join(f"{r.msg_per_s:.0f}" for r in runs)
        cpus = " ".join(fmt(r.per_msg(r.work_cpu), ".3f") for r in runs)
        line = f"  {scenario:<15} {store:<14} {rates:<14} | {cpus:<14}"
        if "consume" in scenario or "claim" in scenario:
            line += " | " + " ".join(f"{r.depth:.0f}" for r in runs)
        out(line.rstrip())


def print_problems(outcome: Outcome, out: Callable[[str], None] = print) -> None:
    out("\nchecks (error replies, queue counts after every run, hangs, server logs):")
    found = False
    for (phase, label), why in outcome.failures.items():
        found = True
        out(f"  {label} {phase}: DROPPED: {why}")
    for runs in outcome.runs.values():
        for i, run in enumerate(runs):
            for problem in run.problems:
                found = True
                out(f"  {run.store} {run.phase} {run.scenario} round {i + 1}: {problem}")
    for note in outcome.notes:
        if "server log" in note:
            found = True
            out(f"  {note}")
    if not found:
        out("  none: every reply as expected, every queue count matched")
    cleanup = [n for n in outcome.notes if "server log" not in n]
    if cleanup:
        out("cleanup: " + "; ".join(cleanup))


def report(outcome: Outcome, args: argparse.Namespace, elapsed: float) -> None:
    setting = f"{args.threads} threads, {args.seconds:g}s per scenario x {args.rounds} rounds (pooled)"
    print(f"\nin-process, API layer (Api.handle, no transport); {setting}")
    rows = _rows(outcome, "in-process")
    print_table(rows)
    print_ratios(rows)
    print_rounds(outcome, "in-process")
    rows = _rows(outcome, "http")
    if rows:
        print(f"\nHTTP, one zaqar-server per store ({args.server_threads or 'default'} threads, keep-alive "
              f"clients); {setting}")
        print_table(rows)
        print_ratios(rows)
        print_rounds(outcome, "http")
    print_problems(outcome)
    print(f"\ntotal {elapsed:.0f} s")


# ----------------------------------------------------------------------------------------------------------
# Entry point.


def parse_backends(text: str) -> list[Backend]:
    labels: list[str] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name in ALIASES:
            labels.extend(ALIASES[name])
        elif name in BACKENDS:
            labels.append(name)
        else:
            known = ", ".join([*ALIASES, *BACKENDS])
            raise argparse.ArgumentTypeError(f"unknown store {name!r}; known: {known}")
    return [BACKENDS[label] for label in dict.fromkeys(labels)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_bench",
                                     description="Benchmark the message stores, in-process and over HTTP.")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="duration of each scenario run (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="repeat every scenario this many times, stores interleaved (default 2)")
    parser.add_argument("--drivers", type=parse_backends, default=parse_backends("sqlite,redis,sqlalchemy"),
                        help="comma-separated: sqlite (= sqlite-full,sqlite-normal), sqlite-full, "
                             "sqlite-normal, redis, sqlalchemy (default sqlite,redis,sqlalchemy)")
    parser.add_argument("--http", action=argparse.BooleanOptionalAction, default=True,
                        help="also benchmark one zaqar-server per store over HTTP (default on)")
    parser.add_argument("--server-threads", type=int, default=0,
                        help="worker threads of the zaqar-servers (default 0: chosen by each store)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help=f"Redis server (default {DEFAULT_REDIS})")
    parser.add_argument("--sql-url", default=DEFAULT_SQL, help=f"SQL server (default {DEFAULT_SQL})")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="ANALYZE the PostgreSQL tables after filling the queues, before the clock "
                             "starts, as autovacuum would on a long-running server (default on)")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.seconds <= 0 or not args.drivers:
        parser.error("--threads and --rounds must be >= 1, --seconds > 0, --drivers not empty")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    outcome = Outcome()
    log(f"stores: {', '.join(b.label for b in args.drivers)}")
    in_process_phase(args.drivers, args, outcome)
    if args.http:
        http_phase(args.drivers, args, outcome)
    report(outcome, args, time.perf_counter() - started)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "threads": args.threads, "rounds": args.rounds,
                       "runs": [r.summary() for runs in outcome.runs.values() for r in runs],
                       "failures": {f"{p} {s}": why for (p, s), why in outcome.failures.items()},
                       "notes": outcome.notes}, f, indent=2)
    bad = outcome.failures or any(r.problems for runs in outcome.runs.values() for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
