"""What the benchmark scripts share: the timed loop, CPU probes, Redis namespaces, number formatting.

Why one module: every script measures the same way (threads released together
by a barrier, a deadline, CPU read from ``/proc`` right before and after), and a
figure is only comparable across scripts while that stays one piece of code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from benchmarks import servers

HANG_AFTER = 60.0  # a call still running this long after the deadline counts as a hang
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def round_ratios(a: Sequence[float | None], b: Sequence[float | None]) -> str:
    """Round i of one target against round i of the other: the same minute of machine noise."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True) if x is not None and y)
    if not ratios:
        return ""
    return f"[{statistics.median(ratios):.2f}x, {ratios[0]:.2f}-{ratios[-1]:.2f}]"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``sorted_values`` lie (nearest rank); nan when empty."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


# ----------------------------------------------------------------------------------------------------------
# The timed loop.


@dataclasses.dataclass
class Recorder:
    """What one client thread did in one run."""

    requests: int = 0
    messages: int = 0
    errors: int = 0
    drained: bool = False  # the thread's queue ran dry, so it stopped early
    first_error: str = ""
    latencies: list[float] = dataclasses.field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what[:300]


R = TypeVar("R", bound=Recorder)


@dataclasses.dataclass
class Probe:
    """The processes whose CPU a run is charged: the server and the database server's, if any."""

    server_pid: int | None
    db_pids: Callable[[], Sequence[int]] = tuple

    def read(self) -> tuple[float, float | None, dict[int, float]]:
        """(this process's CPU, server CPU, CPU per database process), seconds."""
        server = servers.cpu_seconds(self.server_pid) if self.server_pid else None
        db: dict[int, float] = {}
        for pid in self.db_pids():
            with contextlib.suppress(OSError):
                db[pid] = servers.cpu_seconds(pid)
        return time.process_time(), server, db


def db_delta(before: dict[int, float], after: dict[int, float]) -> float | None:
    """CPU the database processes used in between; a process that appeared counts whole."""
    if not after:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Hang(Exception):
    pass


@dataclasses.dataclass
class Measured(Generic[R]):
    recs: list[R]
    seconds: float
    own_cpu: float
    server_cpu: float | None
    db_cpu: float | None
    failures: list[str]


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def timed(step: Callable[[int, R], bool], threads: int, seconds: float, probe: Probe,
          recorder: Callable[[], R]) -> Measured[R]:
    """``step(thread, rec)`` in ``threads`` threads until the deadline (or until it returns False);
    each thread gets its own ``recorder()``.

    The threads start together at a barrier, after every untimed setup, and the probe is read
    right before the barrier and right after the last thread ends. An exception ends only its
    thread and is reported in ``failures``; a thread still inside a call ``HANG_AFTER`` seconds after
    the deadline raises ``Hang``.
    """
    recs = [recorder() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]
    failures: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            while time.perf_counter() < deadline[0] and step(i, recs[i]):
                pass
        except Exception as exc:  # reported as a problem of this run
            failures.append(f"thread {i}: {exc!r}"[:300])

    pool = [threading.Thread(target=worker, args=(i,), name=f"bench-{i}", daemon=True)
            for i in range(threads)]
    for t in pool:
        t.start()
    before = probe.read()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for t in pool:
        t.join(max(0.0, started + seconds + HANG_AFTER - time.perf_counter()))
    elapsed = time.perf_counter() - started
    after = probe.read()
    hung = [t.name for t in pool if t.is_alive()]
    if hung:
        raise Hang(f"{len(hung)} of {threads} threads still inside a call {HANG_AFTER:.0f}s after the "
                   f"deadline ({', '.join(hung)}); messages so far {sum(r.messages for r in recs)}")
    return Measured(recs, elapsed, after[0] - before[0], _delta(after[1], before[1]),
                    db_delta(before[2], after[2]), failures)


# ----------------------------------------------------------------------------------------------------------
# Redis: a key prefix per run, and the server's processes.


def with_query(url: str, extra: str) -> str:
    return url + ("&" if "?" in url else "?") + extra


def is_local(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK


def redis_pids() -> tuple[int, ...]:
    """Every ``redis-server`` process on this machine (its CPU is charged to the run)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry.name}/comm").read_text().strip() == "redis-server":
                    pids.append(int(entry.name))
    return tuple(pids)


def delete_prefix(base: str, prefix: str, notes: list[str]) -> None:
    """Delete every key under ``prefix`` on the Redis server ``base``; say what happened in ``notes``."""
    import redis

    client = redis.Redis.from_url(base)
    try:
        deleted = 0
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            deleted += client.delete(*keys[start:start + 1000])
        left = sum(1 for _ in client.scan_iter(match=prefix + "*", count=1000))
        notes.append(f"redis: deleted {deleted} keys under {prefix!r}, {left} left")
    except Exception as exc:  # a benchmark reports a failed cleanup rather than hiding its figures
        notes.append(f"redis: cleanup of {prefix!r} FAILED: {exc!r}")
    finally:
        client.close()
