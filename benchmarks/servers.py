"""Start and stop the servers the benchmarks run against, and read their CPU time.

Every server gets a fresh temporary state directory (so the sqlite file starts
empty), a free loopback port, and its stdout/stderr in ``server.log`` inside
that directory. CPU time comes from ``/proc/<pid>/stat`` (utime + stime) summed
over the process and its live descendants, so a pre-forking server such as
gunicorn (master + worker) is measured whole.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from zaqar.bootstrap import store_threads

CLK_TCK = os.sysconf("SC_CLK_TCK")
WSGI_SERVERS = ("builtin", "cheroot", "waitress", "gunicorn", "uwsgi")
ROOT = Path(__file__).resolve().parent.parent
# What zaqar-server runs on its default store (SQLite) when threads = 0; the scripts' default for every
# server they compare (the harness follows each store's own choice instead).
DEFAULT_THREADS = store_threads("sqlite")
PROBE_HEADERS = {"Client-ID": "4f0e2a5c-2b9e-11e3-b191-71861300734c", "X-Project-ID": "bench-probe"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode()
    # the command name (field 2) may contain spaces; everything after its ")" is space separated
    return raw[raw.rindex(")") + 2:].split()


def proc_status(pid: int) -> dict[str, int]:
    """Numeric fields of ``/proc/<pid>/status`` (``VmRSS`` and the other Vm* in kB, ``Threads``)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                out[name] = int(parts[0])
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and all its live descendants, in seconds."""
    ticks: dict[int, int] = {}
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))  # fields[0] is stat field 3 (state)
        except (OSError, ValueError):
            continue  # exited between listing and reading
        proc = int(entry.name)
        parent[proc] = int(fields[1])  # field 4: ppid
        ticks[proc] = int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    wanted, todo = set(), [pid]
    while todo:
        current = todo.pop()
        wanted.add(current)
        todo.extend(p for p, pp in parent.items() if pp == current and p not in wanted)
    return sum(ticks.get(p, 0) for p in wanted) / CLK_TCK


def write_config(state_dir: Path, port: int, threads: int, websocket_port: int | None = None,
                 message_store: str | None = None, store_uri: str | None = None,
                 pooling: bool = False) -> Path:
    """HTTP only by default; with ``websocket_port`` also the websocket listener (``threads`` workers).

    ``message_store`` (sqlite, redis, sqlalchemy) and ``store_uri`` choose the message store; by
    default the server's own (sqlite in ``state_dir``). With ``pooling`` the server runs the pooled
    store over the pools registered in its sqlite management store
    (``<state_dir>/zaqar-management.sqlite``, the default location).
    """
    path = state_dir / "zaqar.conf"
    text = (
        "[DEFAULT]\n"
        f"state_path = {state_dir}\n"
        "[drivers]\n"
        # HTTP only unless asked: no websocket listener competing for the port or the CPU
        f"transport = {'wsgi,websocket' if websocket_port else 'wsgi'}\n"
        "[drivers:transport:wsgi]\n"
        "bind = 127.0.0.1\n"
        f"port = {port}\n"
        f"threads = {threads}\n"  # 0: zaqar-server chooses by the message store
    )
    if websocket_port:
        text += (
            "[drivers:transport:websocket]\n"
            "bind = 127.0.0.1\n"
            f"port = {websocket_port}\n"
            f"workers = {threads}\n"
        )
    if message_store:
        text = text.replace("[drivers]\n", f"[drivers]\nmessage_store = {message_store}\n", 1)
    if store_uri:
        text += f"[drivers:message_store:{message_store or 'sqlite'}]\nuri = {store_uri}\n"
    if pooling:
        text = text.replace("[drivers]\n", "[drivers]\nmanagement_store = sqlite\n", 1)
        text = text.replace("[DEFAULT]\n", "[DEFAULT]\npooling = true\n", 1)
    path.write_text(text)
    return path


def zaqar_server_command() -> list[str]:
    script = Path(sys.executable).with_name("zaqar-server")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "zaqar.cmd.server"]


class ServerProcess:
    """A server subprocess on 127.0.0.1:``port`` with its own temporary state directory."""

    def __init__(self, name: str, argv_for: list[str], port: int, state_dir: Path, log_path: Path) -> None:
        self.name, self.port, self.state_dir, self.log_path = name, port, state_dir, log_path
        self.websocket_port: int | None = None  # set by start_zaqar(websocket=True)
        self._log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(argv_for, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(ROOT))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{tail}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/ping", headers=PROBE_HEADERS)
                status = conn.getresponse().status
                conn.close()
                if status in (200, 204):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s; log:\n{tail}")

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        """Until something accepts TCP connections on ``port`` (e.g. the websocket listener)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return
            except OSError:
                time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{self.name}: nothing listening on port {port}; log:\n{tail}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, keep_state: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if not keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def start_zaqar(threads: int = DEFAULT_THREADS, websocket: bool = False, message_store: str | None = None,
                store_uri: str | None = None, pooling: bool = False,
                prepare: Callable[[Path], None] | None = None) -> ServerProcess:
    """``zaqar-server --config-file <tmp>/zaqar.conf`` on a free port; waits until it answers.

    With ``websocket`` it also serves the websocket transport, on a second free port
    (``server.websocket_port``), with ``threads`` workers. ``message_store`` and ``store_uri``
    pick the message store (default: sqlite in the temporary state directory). ``pooling`` turns
    the pooled store on (see ``write_config``); ``prepare(state_dir)`` runs before the server
    starts, e.g. to register the pools in ``<state_dir>/zaqar-management.sqlite``.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="zaqar-bench-"))
    if prepare is not None:
        try:
            prepare(state_dir)
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
    port = free_port()
    ws_port = None
    if websocket:
        ws_port = free_port()
        while ws_port == port:
            ws_port = free_port()
    config = write_config(state_dir, port, threads, ws_port, message_store, store_uri, pooling)
    server = ServerProcess("zaqar-server", [*zaqar_server_command(), "--config-file", str(config)], port,
                           state_dir, state_dir / "server.log")
    server.websocket_port = ws_port
    server.wait_ready()
    if ws_port:
        server.wait_port(ws_port)
    return server


def wsgi_server_installed(name: str) -> bool:
    """Whether ``benchmarks.wsgi_servers`` can run ``name`` here (the bench extra has only some)."""
    if name == "builtin":
        return True
    if name == "uwsgi":
        return shutil.which("uwsgi") is not None or (Path(sys.executable).parent / "uwsgi").exists()
    return importlib.util.find_spec(name) is not None


def start_wsgi(name: str, threads: int = DEFAULT_THREADS) -> ServerProcess:
    """The zaqar falcon app under WSGI server ``name`` (see benchmarks/wsgi_servers.py)."""
    if name not in WSGI_SERVERS:
        raise ValueError(f"unknown WSGI server {name!r}; choose from {', '.join(WSGI_SERVERS)}")
    state_dir = Path(tempfile.mkdtemp(prefix=f"zaqar-bench-{name}-"))
    port = free_port()
    config = write_config(state_dir, port, threads)
    argv = [sys.executable, "-m", "benchmarks.wsgi_servers", name, "--port", str(port),
            "--threads", str(threads), "--config-file", str(config)]
    server = ServerProcess(name, argv, port, state_dir, state_dir / "server.log")
    server.wait_ready()
    return server


def start_ceiling(kind: str, threads: int = DEFAULT_THREADS) -> ServerProcess:
    """A bare-framework server of benchmarks/ceilings.py: ``http`` (falcon on zaqar's HTTP server) or
    ``websocket`` (ws4py).

    ``threads`` are the HTTP server's threads or the websocket answering workers; waits until it answers
    (``GET /v2/ping``) or accepts connections.
    """
    if kind not in ("http", "websocket"):
        raise ValueError(f"unknown ceiling {kind!r}; choose http or websocket")
    state_dir = Path(tempfile.mkdtemp(prefix=f"zaqar-bench-ceiling-{kind}-"))
    port = free_port()
    option = "--threads" if kind == "http" else "--workers"
    argv = [sys.executable, "-m", "benchmarks.ceilings", kind, "--port", str(port), option, str(threads)]
    server = ServerProcess(f"ceiling-{kind}", argv, port, state_dir, state_dir / "server.log")
    if kind == "http":
        server.wait_ready()
    else:
        server.websocket_port = port
        server.wait_port(port)
    return server


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()
