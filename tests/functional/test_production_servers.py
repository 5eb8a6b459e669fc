"""The HTTP transport under uwsgi and gunicorn, run with README's own commands.

README ("Serving HTTP in production") gives one command for each, two worker
processes on one SQLite file. These tests run exactly those commands (the
port aside) and check what an operator relies on: every worker stores,
claims and notifies as ``zaqar-server`` does, a change made through one
worker binds the others at once, and SIGTERM stops the server and its
workers.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.receivers import HttpReceiver
from tests.server import _free_port

ROOT = Path(__file__).resolve().parents[2]
README_ADDRESS = "127.0.0.1:8888"
SERVERS = ("gunicorn", "uwsgi")
PATCH = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}


def documented_command(name: str) -> list[str]:
    """README's command line for ``name``, backslash continuations joined."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith(f"    {name} "):
            command = line.strip()
            while command.endswith("\\"):
                number += 1
                command = command[:-1] + " " + lines[number].strip()
            return shlex.split(command)
    raise AssertionError(f"README.md shows no {name} command")


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    """One WSGI server started from README's command, on a fresh state directory."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "zaqar.conf"
        config.write_text(f"[DEFAULT]\nstate_path = {workdir / 'state'}\n")
        command = [arg.replace(README_ADDRESS, f"127.0.0.1:{self.port}") for arg in documented_command(name)]
        command[0] = str(Path(sys.executable).with_name(command[0]))
        self.log_path = workdir / "server.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                         # HOME: gunicorn keeps a control socket under ~/.gunicorn
                                         env={**os.environ, "ZAQAR_CONFIG_FILE": str(config),
                                              "HOME": str(workdir)},
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"{name} exited {self.proc.returncode}:\n{self.log()}"
            try:
                ping = requests.get(f"{self.url}/v2/ping", headers=self.headers("ping"), timeout=2)
                if ping.status_code == 204:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"{name} did not answer in 60 s:\n{self.log()}"
            time.sleep(0.1)
        self.workers = _children(self.proc.pid)
        assert len(self.workers) == 2, f"expected the 2 documented workers, found {self.workers}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @staticmethod
    def headers(project: str) -> dict[str, str]:
        return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _installed(name: str) -> bool:
    return Path(sys.executable).with_name(name).exists()


@pytest.fixture(scope="module", params=SERVERS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    name = request.param
    if not _installed(name):
        pytest.fail(f"{name} is not installed beside {sys.executable}: it is in the test extras")
    server = Served(name, tmp_path_factory.mktemp(name))
    yield server
    server.stop()


def _worker_cpu(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _post_each(served: Served, project: str, url: str, bodies: list[Any], failures: list[str]) -> None:
    with requests.Session() as http:  # one keep-alive connection per poster
        for body in bodies:
            reply = http.post(f"{url}/messages", json={"messages": [{"body": body, "ttl": 300}]},
                              headers=served.headers(project), timeout=30)
            if reply.status_code != 201:
                failures.append(f"post {reply.status_code} {reply.text}")


class _Consumed:
    """Bodies claimed and deleted by several consumers, until ``expected`` of them."""

    def __init__(self, expected: int) -> None:
        self.expected, self.bodies, self.failures = expected, [], []
        self._lock = threading.Lock()

    def done(self) -> bool:
        with self._lock:
            return len(self.bodies) >= self.expected or bool(self.failures)

    def consume(self, served: Served, project: str, url: str) -> None:
        deadline = time.monotonic() + 60
        with requests.Session() as http:
            while not self.done() and time.monotonic() < deadline:
                reply = http.post(f"{url}/claims", json={"ttl": 60, "grace": 60}, params={"limit": 10},
                                  headers=served.headers(project), timeout=30)
                if reply.status_code == 204:
                    time.sleep(0.05)  # nothing to claim yet
                    continue
                if reply.status_code != 201:
                    self.failures.append(f"claim {reply.status_code} {reply.text}")
                    return
                for message in reply.json()["messages"]:
                    gone = http.delete(f"{served.url}{message['href']}", headers=served.headers(project),
                                       timeout=30)
                    if gone.status_code != 204:
                        self.failures.append(f"delete {gone.status_code} {gone.text}")
                    with self._lock:
                        self.bodies.append(message["body"])


def test_workers_store_and_hand_out_every_message_once(served: Served) -> None:
    project, queue = f"prod-{uuid.uuid4().hex[:8]}", "work"
    url = f"{served.url}/v2/queues/{queue}"
    posted = [{"poster": p, "n": n} for p in range(6) for n in range(20)]
    post_failures: list[str] = []
    consumed = _Consumed(len(posted))
    before = {pid: _worker_cpu(pid) for pid in served.workers}
    threads = [threading.Thread(target=_post_each, args=(served, project, url, posted[p * 20:(p + 1) * 20],
                                                         post_failures)) for p in range(6)]
    threads += [threading.Thread(target=consumed.consume, args=(served, project, url)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert post_failures == [] and consumed.failures == []
    key = lambda body: (body["poster"], body["n"])  # noqa: E731
    assert sorted(consumed.bodies, key=key) == posted  # each once: nothing lost, nothing handed out twice
    stats = requests.get(f"{url}/stats", headers=served.headers(project), timeout=30).json()["messages"]
    assert stats["total"] == 0
    assert all(_worker_cpu(pid) > before[pid] for pid in served.workers), "one worker served nothing"


def test_metadata_changed_through_one_worker_binds_every_worker(served: Served) -> None:
    project, queue = f"prod-{uuid.uuid4().hex[:8]}", "ttl-by-default"
    url = f"{served.url}/v2/queues/{queue}"
    assert requests.put(url, json={"_default_message_ttl": 600}, headers=served.headers(project),
                        timeout=30).status_code == 201

    def ttls_seen(count: int) -> set[int]:
        """Posts without a ttl on ``count`` new connections (both workers), and the ttl each got."""
        seen = set()
        for n in range(count):
            headers = {**served.headers(project), "Connection": "close"}
            reply = requests.post(f"{url}/messages", json={"messages": [{"body": n}]}, headers=headers,
                                  timeout=30)
            assert reply.status_code == 201, reply.text
            href = reply.json()["resources"][0]
            seen.add(requests.get(f"{served.url}{href}", headers=headers, timeout=30).json()["ttl"])
        return seen

    assert ttls_seen(16) == {600}  # every worker has read (and cached) the metadata
    patched = requests.patch(url, json=[{"op": "replace", "path": "/metadata/_default_message_ttl",
                                         "value": 77}],
                             headers={**served.headers(project), **PATCH}, timeout=30)
    assert patched.status_code == 200, patched.text
    assert ttls_seen(16) == {77}


def test_each_message_reaches_a_webhook_once(served: Served) -> None:
    project, queue = f"prod-{uuid.uuid4().hex[:8]}", "hooked"
    url = f"{served.url}/v2/queues/{queue}"
    with HttpReceiver() as hook:
        reply = requests.post(f"{url}/subscriptions", json={"subscriber": hook.url, "ttl": 3600},
                              headers=served.headers(project), timeout=30)
        assert reply.status_code == 201, reply.text
        for n in range(10):
            headers = {**served.headers(project), "Connection": "close"}  # both workers post
            reply = requests.post(f"{url}/messages", json={"messages": [{"body": {"n": n}, "ttl": 300}]},
                                  headers=headers, timeout=30)
            assert reply.status_code == 201, reply.text
        delivered = hook.wait_for(10, timeout=30)
        assert sorted(post.json()["body"]["n"] for post in delivered) == list(range(10))
        hook.assert_quiet(10, settle=1.0)


def test_sigterm_stops_the_server_and_its_workers(served: Served) -> None:
    # Last in the module: the server is gone afterwards.
    served.proc.send_signal(signal.SIGTERM)
    try:
        status = served.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 30 s after SIGTERM:\n{served.log()}")
    assert status == 0, f"exited {status} (uwsgi without --die-on-term reloads instead):\n{served.log()}"
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in served.workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in served.workers), "workers outlived their server"
