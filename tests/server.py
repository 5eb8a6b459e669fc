"""Run a real ``zaqar-server`` process for tests that talk to it over sockets.

``ServerProcess`` owns one state directory. ``start()`` launches the server
(the ``zaqar-server`` console script of the running interpreter, or
``python -m zaqar.cmd.server``) with a generated config file and waits until
every configured transport answers: ``GET /`` → 300 for HTTP (``url``), an
accepted TCP connection for the websocket (``ws_url``). The first start picks
free ports (and retries with others if one was taken in the meantime); every
later start (after ``stop()`` or ``kill()``) reuses those ports and the same
state directory, so a client built before a restart keeps working.

Ports are always given explicitly, never 0: for port 0 the HTTP library does
not set SO_REUSEADDR, and a restart on the same port would then fail while
connections of a killed process linger in FIN_WAIT.

``running_server(path)`` is the context manager tests use: on exit it stops
the server with SIGTERM and asserts that it exited 0 within ``STOP_TIMEOUT``
seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import requests

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3
ALL_TRANSPORTS = ("wsgi", "websocket")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command() -> list[str]:
    script = Path(sys.executable).with_name("zaqar-server")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "zaqar.cmd.server"]


class ServerProcess:
    """One zaqar-server process at a time, always on the same state directory and ports.

    ``options`` adds or overrides config options: ``{"DEFAULT": {"admin_mode": "true"}}``.
    """

    def __init__(
        self,
        workdir: Path,
        transports: Sequence[str] = ALL_TRANSPORTS,
        options: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        assert transports and set(transports) <= set(ALL_TRANSPORTS), transports
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = workdir / "zaqar.conf"
        self.transports = tuple(transports)
        self.options = {section: dict(values) for section, values in (options or {}).items()}
        self.port = 0
        self.ws_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_path: Path | None = None

    @property
    def url(self) -> str:
        assert "wsgi" in self.transports and self.port, "no HTTP transport started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        assert "websocket" in self.transports and self.ws_port, "no websocket transport started"
        return f"ws://127.0.0.1:{self.ws_port}"

    def log(self) -> str:
        """The output of the current (or last) server process."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def _write_conf(self) -> None:
        sections: dict[str, dict[str, str]] = {
            "DEFAULT": {"state_path": str(self.state_dir)},
            "drivers": {"transport": ",".join(self.transports)},
            "drivers:transport:wsgi": {"bind": "127.0.0.1", "port": str(self.port)},
            "drivers:transport:websocket": {"bind": "127.0.0.1", "port": str(self.ws_port)},
        }
        for section, values in self.options.items():
            sections.setdefault(section, {}).update(values)
        self.conf_path.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items()) + "\n"
                for section, values in sections.items()
            )
        )

    def start(self) -> None:
        """Launch the server; return once every configured transport answers."""
        assert self.proc is None, "server already running"
        if self.starts:
            self._launch()
            return
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port, self.ws_port = _free_port(), _free_port()
            try:
                self._launch()
                return
            except AssertionError:
                if attempt == START_ATTEMPTS or "Address already in use" not in self.log():
                    raise

    def _launch(self) -> None:
        self._write_conf()
        self.starts += 1
        self._log_path = self.workdir / f"server-{self.starts}.log"
        with open(self._log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*_command(), "--config-file", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        self._wait_until_answering(time.monotonic() + START_TIMEOUT)

    def _fail(self, why: str) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        raise AssertionError(f"{why}\n--- server log ---\n{self.log()}")

    def _answers(self) -> bool:
        if "wsgi" in self.transports:
            try:
                if requests.get(self.url + "/", timeout=2).status_code != 300:
                    return False
            except requests.ConnectionError:
                return False
        if "websocket" in self.transports:
            try:
                socket.create_connection(("127.0.0.1", self.ws_port), timeout=2).close()
            except OSError:
                return False
        return True

    def _wait_until_answering(self, deadline: float) -> None:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"zaqar-server exited with {self.proc.returncode} during start-up")
            # Checked again afterwards: a port taken by another process may answer while ours exits.
            if self._answers() and self.proc.poll() is None:
                return
            time.sleep(0.05)
        self._fail(f"zaqar-server did not answer on {', '.join(self.transports)} within {START_TIMEOUT}s")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the server and return its exit status; fail if it does not exit in time."""
        assert self.proc is not None, "server not running"
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"zaqar-server ignored SIGTERM for {timeout}s\n--- server log ---\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the server: no shutdown code runs, as when the process crashes or is OOM-killed."""
        assert self.proc is not None, "server not running"
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=STOP_TIMEOUT) == -signal.SIGKILL

    def restart_after_kill(self) -> None:
        self.kill()
        self.start()

    def restart_after_stop(self) -> None:
        status = self.stop()
        assert status == 0, f"zaqar-server exited with {status}\n--- server log ---\n{self.log()}"
        self.start()


@contextlib.contextmanager
def running_server(
    workdir: Path,
    transports: Sequence[str] = ALL_TRANSPORTS,
    options: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[ServerProcess]:
    """A started server; on exit it must stop cleanly (exit status 0) on SIGTERM."""
    server = ServerProcess(workdir, transports, options)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            status = server.stop()
            assert status == 0, f"zaqar-server exited with {status}\n--- server log ---\n{server.log()}"
