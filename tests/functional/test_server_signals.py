"""zaqar-server stops on SIGTERM whichever of its threads the kernel hands the signal to.

A process-directed signal goes to any thread that does not block it. Python runs
its handler in the main thread, and only once that thread wakes: a main thread
blocked in ``Event.wait()`` without a timeout never did when a worker thread took
the signal, and the server ignored SIGTERM (seen as a flaky shutdown in CI).
Here the signal is sent to one of its other threads with tgkill(2).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.server import ServerProcess

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)


def _threads(pid: int) -> list[int]:
    """Ids of the server's threads other than the main one, oldest first."""
    return sorted(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir() if int(task.name) != pid)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or SYS_TGKILL is None, reason="tgkill is Linux's")
@pytest.mark.parametrize("thread", [0, 5, -1], ids=["first-started", "a-worker", "last-started"])
def test_sigterm_delivered_to_a_worker_thread_stops_the_server(tmp_path, thread):
    server = ServerProcess(tmp_path)
    server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        threads = _threads(pid)
        assert len(threads) > 5  # sweeper, notifier, both transports' workers and sweepers
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(SYS_TGKILL, pid, threads[thread], signal.SIGTERM) == 0, ctypes.get_errno()
        deadline = time.monotonic() + 5
        while server.proc.poll() is None:
            assert time.monotonic() < deadline, f"ignored SIGTERM taken by {thread}\n{server.log()}"
            time.sleep(0.05)
        assert server.proc.returncode == 0, server.log()
        assert "received signal 15, stopping" in server.log()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
