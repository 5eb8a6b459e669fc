"""In-process hot paths: process CPU per ``Api.handle`` call, with the real Notifier running.

    python -m benchmarks.hotpath_bench [--store sqlite|sqlite-normal|redis|sql|all]
                                       [--calls N] [--rounds R] [--redis-url URL] [--sql-url URL]

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
  claim, as a consumer does (claim and deletes are timed apart).

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


def bench_store(store_name: str, args: argparse.Namespace) -> dict[str, list[float]]:
    with namespace(store_name, args) as (driver_name, uri):
        store = storage.load_data_driver(driver_name, uri)
        notifier = Notifier(store)
        pushed = [0]

        def push(connection: str, document: dict[str, object]) -> bool:
            pushed[0] += 1
            return True

        notifier.register_local(PUSH_BASE, push)
        notifier.start()
        try:
            cache = getattr(store, "cache", None)
            if cache is not None:
                cache.wait_active(10)  # measure the steady state of a running server
            api = Api(Context(store=store, notifier=notifier))
            one_round(api, store, notifier, max(args.calls // 10, 10), "warmup")
            runs: dict[str, list[float]] = {op: [] for op in OPS}
            for number in range(args.rounds):
                for op, value in one_round(api, store, notifier, args.calls, f"r{number}").items():
                    runs[op].append(value)
            if pushed[0] == 0:
                raise RuntimeError("the subscribed queue got no notification")
            return runs
        finally:
            notifier.stop()
            store.close()


def report(results: dict[str, dict[str, list[float]]]) -> None:
    stores = list(results)
    print("\nprocess CPU µs per Api.handle call, real Notifier running (median of rounds; min-max)")
    if "redis" in results:
        import redis.utils

        print(f"redis-py reply parser: {'hiredis' if redis.utils.HIREDIS_AVAILABLE else 'pure Python'}")
    print(f"{'operation':<11}" + "".join(f"{s:>24}" for s in stores))
    for op in OPS:
        cells = []
        for s in stores:
            values = results[s][op]
            cells.append(f"{statistics.median(values):8.1f} ({min(values):.0f}-{max(values):.0f})")
        print(f"{op:<11}" + "".join(f"{c:>24}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="all", choices=(*STORES, "all"))
    parser.add_argument("--calls", type=int, default=2000, help="calls per operation per round")
    parser.add_argument("--rounds", type=int, default=3)
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
