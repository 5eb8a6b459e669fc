"""The websocket listener: accept, handshake, then one epoll loop reading every connection.

Concurrency model: one acceptor thread, a small pool for handshakes, one
I/O thread that polls all connections (no thread per connection, so
thousands of idle connections cost memory, not threads), and a worker pool
that answers frames.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from zaqar.api import Api
from zaqar.transport.websocket import handshake, protocol
from zaqar.transport.websocket.connection import ZaqarSocket

LOG = logging.getLogger("zaqar.transport.websocket")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    bind: str = "127.0.0.1"
    port: int = 9000
    workers: int = 16
    max_frame_size: int = 256 * 1024 + 64 * 1024
    idle_timeout: float = 0.0  # seconds without a frame before closing; 0 = never
    handshake_timeout: float = 10.0
    send_timeout: float = 30.0


class WebSocketServer:
    def __init__(self, api: Api, settings: Settings) -> None:
        self.settings = settings
        self._handler = functools.partial(protocol.handle_frame, api)
        self._workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="zaqar-ws-worker")
        self._handshakes = ThreadPoolExecutor(4, thread_name_prefix="zaqar-ws-handshake")
        self._epoll = select.epoll()
        self._connections: dict[int, ZaqarSocket] = {}
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._listener = socket.create_server((settings.bind, settings.port), backlog=1024)
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def __len__(self) -> int:
        return len(self._connections)

    def start(self) -> None:
        self._running.set()
        for target, name in ((self._accept_loop, "zaqar-ws-accept"), (self._io_loop, "zaqar-ws-io")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.5)
        while self._running.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._running.is_set():
                    LOG.exception("accept failed")
                return
            self._handshakes.submit(self._handshake, sock)

    def _handshake(self, sock: socket.socket) -> None:
        sock.settimeout(self.settings.handshake_timeout)
        try:
            head, rest = self._read_head(sock)
            headers = handshake.parse(head)
            sock.sendall(handshake.accept(headers["sec-websocket-key"]))
        except handshake.HandshakeError as exc:
            LOG.info("refused websocket handshake: %s", exc)
            with _suppress_socket_errors():
                sock.sendall(handshake.refuse(exc))
            sock.close()
            return
        except OSError as exc:
            LOG.info("websocket handshake failed: %s", exc)
            sock.close()
            return
        sock.settimeout(self.settings.send_timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        ws = ZaqarSocket(sock, self._handler, self._workers, self.settings.max_frame_size)
        ws.buf = rest
        if rest and not ws.once():  # frames sent right behind the handshake, before polling starts
            ws.terminate()
            return
        with self._lock:
            self._connections[sock.fileno()] = ws
            self._epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)

    @staticmethod
    def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("peer closed during handshake")
            data += chunk
            if len(data) > handshake.MAX_HEAD:
                too_large = "431 Request Header Fields Too Large"
                raise handshake.HandshakeError("request head too large", too_large)
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _io_loop(self) -> None:
        last_sweep = time.monotonic()
        while self._running.is_set():
            events = self._epoll.poll(0.5)
            for fd, _ in events:
                ws = self._connections.get(fd)
                if ws is None:
                    continue
                try:
                    alive = ws.once()
                except Exception:
                    LOG.exception("error reading connection %s", ws.id)
                    alive = False
                if not alive:
                    self._drop(fd, ws)
            if time.monotonic() - last_sweep > 1.0:
                last_sweep = time.monotonic()
                self._sweep(last_sweep)

    def _sweep(self, now: float) -> None:
        """Drop connections whose lingering close ran out, and close idle ones."""
        idle = self.settings.idle_timeout
        for fd, ws in list(self._connections.items()):
            if ws.discard_until is not None and now > ws.discard_until:
                self._drop(fd, ws)
            elif idle and now - ws.last_seen > idle:
                LOG.info("closing idle connection %s", ws.id)
                with _suppress_socket_errors():
                    ws.close(1001, "Idle timeout.")
                self._drop(fd, ws)

    def _drop(self, fd: int, ws: ZaqarSocket) -> None:
        with self._lock:
            if self._connections.pop(fd, None) is None:
                return
            with _suppress_socket_errors():
                self._epoll.unregister(fd)
        if not ws.terminated:
            ws.terminate()

    def stop(self) -> None:
        """Close every connection with 1001, then stop the threads."""
        self._running.clear()
        self._listener.close()
        for fd, ws in list(self._connections.items()):
            with _suppress_socket_errors():
                ws.close(1001, "Server is shutting down.")
            self._drop(fd, ws)
        for thread in self._threads:
            thread.join(timeout=5)
        self._handshakes.shutdown(wait=False, cancel_futures=True)
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._epoll.close()


class _suppress_socket_errors:  # noqa: N801 - used like contextlib.suppress
    """Closing a connection whose peer already vanished is not an error worth raising."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, OSError | RuntimeError):
            LOG.debug("ignored while closing: %s", exc)
            return True
        return False
