"""In-process hot paths: process CPU per ``Api.handle`` call, with the real Notifier running.

    python -m benchmarks.hotpath_bench [--store sqlite|sqlite-normal|redis|sql|all]
                                       [--calls N] [--rounds R] [--threads 4,16] [--only OPS]
                                       [--redis-url URL] [--sql-url URL]

One thread drives ``Api(Context(store, notifier)).handle`` directly (no transport,
no sockets), so the figure is what the API layer, the store client and the
notifier cost per call: ``time.process_time`` of the whole process (every
thread: the notifier's dispatcher included) over the calls, after the notifier
went idle. Operations:

* ``post1`` / ``post10``: ``message_post`` with 1 / 10 messages to a queue nobody subscribes to;
* ``post1-sub``: ``message_post`` with 1 message to a queue with one subscription, delivered by
  an in-process push (what a websocket subscriber of this process costs, minus the socket);
* ``claim10``: ``claim_create`` with ``limit=10`` on a queue pre-filled (untimed) through the store;
* ``delete``: ``message_delete`` of each claimed message with its ``claim_id``, right after its
  claim, as a consumer does (claim and deletes are timed apart);
* ``post1-tN`` (one per ``--threads`` count N): N threads started together, each posting 1
  message per call to one shared queue, ``--calls`` posts in all, as a server's worker threads
  do under load. Besides CPU per post it reports each post's latency (mean, p50, p99) and
  posts/s of wall time: this is where a store that commits concurrent posts together shows.

Every round uses fresh queues; the median round is printed, with the spread.
Each store runs in a namespace of its own, removed at the end (a temporary
directory, a fresh Redis key prefix, a fresh PostgreSQL schema). Compare
before/after as ratios of runs made minutes apart on the same machine: the
absolute figures move with whatever else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

from zaqar import storage
from zaqar.api import Api, Context, Request
from zaqar.notification import Notifier
from zaqar.storage.base import DataDriver, MessageDraft

PROJECT = "hotpath-bench"
CLIENT = str(uuid.uuid4())
BODY = {"event": "bench", "data": "x" * 64}
TTL = 3600
OPS = ("post1", "post10", "post1-sub", "claim10", "delete")
STORES = ("sqlite", "sqlite-normal", "redis", "sql")
DEFAULT_REDIS = os.environ.get("ZAQAR_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
DEFAULT_SQL = os.environ.get("ZAQAR_TEST_SQL_URL") or "postgresql://postgres@127.0.0.1:5432/zaqar_test"
PUSH_BASE = "bench-push://"


def _with_query(url: str, extra: str) -> str:
    return url + ("&" if "?" in url else "?") + extra


@contextlib.contextmanager
def namespace(store: str, args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(driver name, URI) of a store nobody else uses, removed afterwards."""
    if store.startswith("sqlite"):
        where = tempfile.mkdtemp(prefix="zaqar-hotpath-")
        sync = "normal" if store == "sqlite-normal" else "full"
        try:
            yield "sqlite", f"sqlite:///{where}/zaqar.sqlite?synchronous={sync}"
        finally:
            shutil.rmtree(where, ignore_errors=True)
    elif store == "redis":
        import redis

        prefix = f"zaqar-hotpath-{uuid.uuid4().hex}:"
        try:
            yield "redis", _with_query(args.redis_url, f"prefix={quote(prefix)}")
        finally:
            client = redis.Redis.from_url(args.redis_url)
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
            client.close()
    else:
        import sqlalchemy as sa

        schema = f"zaqar_hotpath_{uuid.uuid4().hex}"
        engine = sa.create_engine(args.sql_url, poolclass=sa.pool.NullPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield "sqlalchemy", _with_query(args.sql_url, f"options={quote(f'-csearch_path={schema}')}")
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            engine.dispose()


def _post(queue: str, count: int) -> Request:
    messages = [{"ttl": TTL, "body": BODY} for _ in range(count)]
    return Request("message_post", project_id=PROJECT, client_id=CLIENT,
                   params={"queue_name": queue, "messages": messages})


def _settle(notifier: Notifier, timeout: float = 30.0) -> None:
    """Wait (polling) until the notifier has nothing left to do, so its CPU is counted."""
    deadline = time.monotonic() + timeout
    while not notifier.idle():
        if time.monotonic() > deadline:
            raise RuntimeError("notifier did not go idle")
        time.sleep(0.001)


def _cpu_per_call(calls: Callable[[], int], notifier: Notifier) -> float:
    """µs of process CPU per call made by ``calls`` (which returns how many it made)."""
    started = time.process_time()
    made = calls()
    _settle(notifier)
    return (time.process_time() - started) / max(made, 1) * 1e6


def _check(status: int, expected: int, what: str) -> None:
    if status != expected:
        raise RuntimeError(f"{what} answered {status}, expected {expected}")


def one_round(api: Api, store: DataDriver, notifier: Notifier, n: int, tag: str) -> dict[str, float]:
    """CPU µs per call of every operation, on queues fresh for this round."""
    handle = api.handle
    results: dict[str, float] = {}

    def posts(queue: str, count: int, calls: int) -> Callable[[], int]:
        def run() -> int:
            for _ in range(calls):
                _check(handle(_post(queue, count)).status, 201, "message_post")
            return calls
        return run

    results["post1"] = _cpu_per_call(posts(f"p1-{tag}", 1, n), notifier)
    results["post10"] = _cpu_per_call(posts(f"p10-{tag}", 10, max(n // 5, 1)), notifier)
    subscribed = f"sub-{tag}"
    store.subscriptions.create(PROJECT, subscribed, f"{PUSH_BASE}{tag}", 3600, {})
    handle(_post(subscribed, 1))  # first post: caches warm, like the other queues after their first
    _settle(notifier)
    results["post1-sub"] = _cpu_per_call(posts(subscribed, 1, n), notifier)

    queue = f"c-{tag}"
    for _ in range(n // 40 + 1):  # untimed fill, straight through the store
        store.messages.post(PROJECT, queue, [MessageDraft(BODY, TTL)] * 200, None)
    # A consumer's loop: claim 10, then delete each with its claim id. Both are timed
    # apart; no notification is involved, so the notifier has nothing to settle.
    claim_cpu = delete_cpu = 0.0
    deleted = 0
    claim = Request("claim_create", project_id=PROJECT, client_id=CLIENT,
                    params={"queue_name": queue, "limit": 10, "ttl": 300, "grace": 60})
    for _ in range(n // 2):
        started = time.process_time()
        reply = handle(claim)
        claim_cpu += time.process_time() - started
        _check(reply.status, 201, "claim_create")
        claim_id, messages = reply.data
        started = time.process_time()
        for m in messages:
            reply = handle(Request("message_delete", project_id=PROJECT, client_id=CLIENT,
                                   params={"queue_name": queue, "message_id": m.id, "claim_id": claim_id}))
            _check(reply.status, 204, "message_delete")
        delete_cpu += time.process_time() - started
        deleted += len(messages)
    results["claim10"] = claim_cpu / max(n // 2, 1) * 1e6
    results["delete"] = delete_cpu / max(deleted, 1) * 1e6
    return results


def concurrent_posts(api: Api, notifier: Notifier, threads: int, total: int, tag: str) -> dict[str, float]:
    """``threads`` threads posting 1 message per call to one fresh queue, ``total`` posts in all.

    Returns CPU µs per post (whole process, notifier settled), the mean, p50 and p99 of the
    posts' latencies in µs, and posts per second of wall time.
    """
    per_thread = max(total // threads, 1)
    queue = f"conc{threads}-{tag}"
    _check(api.handle(_post(queue, 1)).status, 201, "message_post")  # the queue exists before timing
    _settle(notifier)
    start = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[BaseException] = []

    def poster(number: int) -> None:
        handle, clock, mine = api.handle, time.perf_counter, latencies[number]
        start.wait()
        try:
            for _ in range(per_thread):
                began = clock()
                status = handle(_post(queue, 1)).status
                mine.append(clock() - began)
                _check(status, 201, "message_post")
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    workers = [threading.Thread(target=poster, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    cpu, wall = time.process_time(), time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - wall
    _settle(notifier)
    cpu = time.process_time() - cpu
    if failures:
        raise failures[0]
    merged = sorted(latency for mine in latencies for latency in mine)
    posts = len(merged)
    return {
        "cpu": cpu / posts * 1e6,
        "mean": statistics.fmean(merged) * 1e6,
        "p50": merged[posts // 2] * 1e6,
        "p99": merged[min(posts - 1, posts * 99 // 100)] * 1e6,
        "rate": posts / wall,
    }


def _wanted(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    """The serial operations and the thread counts of concurrent posts that ``--only`` keeps."""
    counts = [int(n) for n in args.threads.split(",") if n.strip() and int(n) > 0]
    if not args.only:
        return list(OPS), counts
    only = {name.strip() for name in args.only.split(",")}
    return [op for op in OPS if op in only], [n for n in counts if f"post1-t{n}" in only]


def bench_store(store_name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    with namespace(store_name, args) as (driver_name, uri):
        store = storage.load_data_driver(driver_name, uri)
        notifier = Notifier(store)
        pushed = [0]

        def push(connection: str, document: dict[str, object], headers: object) -> bool:
            pushed[0] += 1
            return True

        notifier.register_local(PUSH_BASE, push)
        notifier.start()
        try:
            cache = getattr(store, "cache", None)
            if cache is not None:
                cache.wait_active(10)  # measure the steady state of a running server
            api = Api(Context(store=store, notifier=notifier))
            serial, counts = _wanted(args)
            runs: dict[str, list[float]] = {}
            if serial:
                one_round(api, store, notifier, max(args.calls // 10, 10), "warmup")
            for number in range(args.rounds):
                if serial:
                    for op, value in one_round(api, store, notifier, args.calls, f"r{number}").items():
                        if op in serial:
                            runs.setdefault(op, []).append(value)
                for threads in counts:
                    figures = concurrent_posts(api, notifier, threads, args.calls, f"r{number}")
                    for figure, value in figures.items():
                        runs.setdefault(f"post1-t{threads}:{figure}", []).append(value)
            if serial and pushed[0] == 0:
                raise RuntimeError("the subscribed queue got no notification")
            return runs
        finally:
            notifier.stop()
            store.close()


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.0f}-{max(values):.0f})"


def report(results: dict[str, dict[str, list[float]]]) -> None:
    stores = list(results)
    print("\nprocess CPU µs per Api.handle call, real Notifier running (median of rounds; min-max)")
    if "redis" in results:
        import redis.utils

        print(f"redis-py reply parser: {'hiredis' if redis.utils.HIREDIS_AVAILABLE else 'pure Python'}")
    print(f"{'operation':<11}" + "".join(f"{s:>24}" for s in stores))
    for op in OPS:
        if op in results[stores[0]]:
            print(f"{op:<11}" + "".join(f"{_cell(results[s][op]):>24}" for s in stores))
    concurrent = sorted(
        {key.partition(":")[0] for key in results[stores[0]] if ":" in key},
        key=lambda name: int(name.rpartition("t")[2]),
    )
    if not concurrent:
        return
    print("\nconcurrent 1-message posts to one queue (median of rounds; min-max)")
    labels = {"cpu": "CPU µs/post", "mean": "mean µs", "p50": "p50 µs", "p99": "p99 µs", "rate": "posts/s"}
    print(f"{'operation':<24}" + "".join(f"{s:>24}" for s in stores))
    for name in concurrent:
        for figure, label in labels.items():
            row = f"{name} {label}"
            print(f"{row:<24}" + "".join(f"{_cell(results[s][f'{name}:{figure}']):>24}" for s in stores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="all", choices=(*STORES, "all"))
    parser.add_argument("--calls", type=int, default=2000, help="calls per operation per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads",
        default="4,16",
        help="thread counts of the concurrent post1-tN runs, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {', '.join(OPS)} and post1-tN (default: all)"
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--sql-url", default=DEFAULT_SQL)
    args = parser.parse_args(argv)
    chosen = ("sqlite", "redis", "sql") if args.store == "all" else (args.store,)
    results: dict[str, dict[str, list[float]]] = {}
    for name in chosen:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        results[name] = bench_store(name, args)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
