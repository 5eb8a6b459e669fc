"""What a durable SQLite post costs on this machine, and what sharing its fsync could save.

    python -m benchmarks.commit_cost [--dir DIR] [--posts N] [--wakeups N] [--rounds R]

The SQLite store fsyncs the WAL at every post (``synchronous=full``, the
default), and that fsync is most of a post's CPU: it is what keeps SQLite's
websocket/new-connection ratio of issue #9 above 0.5x. Two ways of paying less
for it keep the guarantee: commit the posts of several threads together (one
fsync for all), or queue the threads on a lock instead of SQLite's polling busy
handler. Both make one thread wake another for every post, so whether they can
win is set by two figures this script measures, each as process CPU (user +
system, every thread) in the same run:

* ``fsync per post``: 1-message posts through the real store, one thread, on a
  file under ``--dir`` at ``synchronous=full`` minus the same at ``normal``;
* ``thread wakeup``: two threads handing a lock back and forth, per hand-over
  (a waiting thread woken, and the GIL passed to it).

Sharing one fsync among ``k`` posts saves ``fsync * (k - 1) / k`` per post, and
the ``k - 1`` posts that waited for it were each woken once: at best a post
saves ``(fsync - wakeup) * (k - 1) / k``, which the table prints. That is a
bound: the woken threads also contend for the GIL, which this does not count.
Run it on the disk the store lives on (``--dir``): the fsync figure is a
property of the file system and the device, the wakeup one of the CPU and the
hypervisor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

from zaqar.storage.base import MessageDraft
from zaqar.storage.sqlite import DataDriver

BODY = {"event": "bench", "thread": 0, "seq": 0, "data": "x" * 64}


def cpu_per_call(run: Callable[[], None], calls: int) -> float:
    """Process CPU (all threads, user + system) per call of ``run``'s ``calls`` calls, in µs."""
    before = time.process_time()
    run()
    return (time.process_time() - before) / calls * 1e6


def post_cost(directory: str, synchronous: str, posts: int) -> float:
    """CPU µs per 1-message post through the SQLite store at ``synchronous``, after a warm-up."""
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        store = DataDriver(f"sqlite:///{os.path.join(scratch, 'cost.sqlite')}?synchronous={synchronous}")
        try:
            draft = [MessageDraft(body=BODY, ttl=300)]
            for _ in range(200):  # the file, the WAL and the queue record exist before timing
                store.messages.post("bench", "q", draft, "client")

            def run() -> None:
                for _ in range(posts):
                    store.messages.post("bench", "q", draft, "client")

            return cpu_per_call(run, posts)
        finally:
            store.close()


def wakeup_cost(handovers: int) -> float:
    """CPU µs per hand-over of a lock between two threads that each block until it is theirs."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()
    rounds = handovers // 2

    def partner() -> None:
        for _ in range(rounds):
            ping.acquire()
            pong.release()

    def run() -> None:
        thread = threading.Thread(target=partner)
        thread.start()
        for _ in range(rounds):
            ping.release()
            pong.acquire()
        thread.join()

    return cpu_per_call(run, rounds * 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.commit_cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="directory on the disk to measure (default: the temporary directory)")
    parser.add_argument("--posts", type=int, default=2000, help="posts per store and round")
    parser.add_argument("--wakeups", type=int, default=20000, help="lock hand-overs per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    full, normal, wake = [], [], []
    for _ in range(args.rounds):  # interleaved, so each round sees the same minute of noise
        full.append(post_cost(args.dir, "full", args.posts))
        normal.append(post_cost(args.dir, "normal", args.posts))
        wake.append(wakeup_cost(args.wakeups))
    fsync = [f - n for f, n in zip(full, normal, strict=True)]

    def line(label: str, values: list[float]) -> str:
        return f"{label:34s} {statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})"

    print(f"process CPU µs, median of {args.rounds} interleaved rounds (min-max); files under {args.dir}")
    print(line("post, synchronous=full", full))
    print(line("post, synchronous=normal", normal))
    print(line("fsync per post (full - normal)", fsync))
    print(line("thread wakeup (lock hand-over)", wake))
    per_fsync, per_wakeup = statistics.median(fsync), statistics.median(wake)
    print("\none fsync shared by k posts, the k - 1 that waited woken once; at best per post:")
    for k in (2, 3, 4, 8):
        share = (k - 1) / k
        print(f"  k={k}: fsync saved {per_fsync * share:6.1f} - wakeups {per_wakeup * share:5.1f}"
              f" = {(per_fsync - per_wakeup) * share:+6.1f} µs")


if __name__ == "__main__":
    main()
