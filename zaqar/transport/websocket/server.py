"""The websocket listener: one epoll loop accepts, handshakes, reads and flushes every socket.

Concurrency model: one I/O thread polls the listener and every connection,
non-blocking throughout, and a worker pool answers frames. No thread per
connection, so thousands of idle connections cost memory, not threads; no
thread waits on a peer, so a slow or hostile peer (slow handshake, replies
left unread) delays nobody else (benchmarks/README.md has the figures).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from zaqar.api import Api
from zaqar.transport.websocket import endpoint, handshake, protocol
from zaqar.transport.websocket.connection import Limits, ZaqarSocket

LOG = logging.getLogger("zaqar.transport.websocket")

_READ, _WRITE = select.EPOLLIN | select.EPOLLRDHUP, select.EPOLLOUT


class LocalRegistry(Protocol):
    """The notifier side: where to hand notifications for this process's connections."""

    def register_local(self, base_url: str, push: Callable[[str, dict[str, Any]], bool]) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    bind: str = "127.0.0.1"
    port: int = 9000
    workers: int = 16
    max_frame_size: int = 256 * 1024 + 64 * 1024
    idle_timeout: float = 0.0  # seconds without a frame before closing; 0 = never
    handshake_timeout: float = 10.0  # for the whole opening handshake, not per read
    send_timeout: float = 30.0  # a peer leaving replies unread this long is dropped
    notification_bind: str | None = None  # endpoint for connection-bound subscriptions; None: bind
    notification_port: int = 0  # 0: any free port
    notification_host: str | None = None  # host written into subscriber URLs; None: the bound address


@dataclasses.dataclass(slots=True)
class _Opening:
    """A connection still sending its HTTP upgrade request."""

    sock: socket.socket
    deadline: float
    head: bytearray = dataclasses.field(default_factory=bytearray)


class WebSocketServer:
    def __init__(self, api: Api, settings: Settings, notifier: LocalRegistry | None = None) -> None:
        self.settings = settings
        self._api, self._notifier = api, notifier
        self._by_id: dict[str, ZaqarSocket] = {}
        bind = settings.notification_bind or settings.bind
        self._endpoint = endpoint.NotificationEndpoint(bind, settings.notification_port, self.push)
        host = settings.notification_host or bind
        self.notification_url = f"http://{host}:{self._endpoint.port}/"
        self._workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="zaqar-ws-worker")
        self._limits = Limits(max_frame=settings.max_frame_size, stall_timeout=settings.send_timeout)
        self._epoll = select.epoll()
        self._connections: dict[int, ZaqarSocket] = {}
        self._openings: dict[int, _Opening] = {}
        self._lock = threading.Lock()  # guards the maps and epoll registrations
        self._running = threading.Event()
        self._listener = socket.create_server((settings.bind, settings.port), backlog=1024)
        self._listener.setblocking(False)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def __len__(self) -> int:
        return len(self._connections)

    def start(self) -> None:
        self._endpoint.start()
        if self._notifier is not None:
            self._notifier.register_local(self.notification_url, self.push)
        self._running.set()
        self._epoll.register(self._listener.fileno(), select.EPOLLIN)
        self._thread = threading.Thread(target=self._loop, name="zaqar-ws-io", daemon=True)
        self._thread.start()

    # -- the loop ------------------------------------------------------------------
    def _loop(self) -> None:
        listener = self._listener.fileno()
        last_sweep = time.monotonic()
        while self._running.is_set():
            for fd, events in self._epoll.poll(0.5):
                if fd == listener:
                    self._accept()
                elif fd in self._openings:
                    self._read_opening(fd)
                else:
                    self._service(fd, events)
            now = time.monotonic()
            if now - last_sweep >= 1.0:
                last_sweep = now
                self._sweep(now)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                LOG.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            opening = _Opening(sock, time.monotonic() + self.settings.handshake_timeout)
            with self._lock:
                self._openings[sock.fileno()] = opening
                self._epoll.register(sock.fileno(), _READ)

    def _read_opening(self, fd: int) -> None:
        opening = self._openings[fd]
        try:
            chunk = opening.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._forget_opening(fd, close=True)
            return
        opening.head += chunk
        if b"\r\n\r\n" in opening.head:
            self._upgrade(fd, opening)
        elif len(opening.head) > handshake.MAX_HEAD:
            too_large = "431 Request Header Fields Too Large"
            self._refuse(fd, handshake.HandshakeError("request head too large", too_large))

    def _upgrade(self, fd: int, opening: _Opening) -> None:
        head, _, rest = bytes(opening.head).partition(b"\r\n\r\n")
        try:
            headers = handshake.parse(head)
        except handshake.HandshakeError as exc:
            self._refuse(fd, exc)
            return
        self._forget_opening(fd, close=False)
        session = protocol.Session()
        handler = functools.partial(protocol.handle_frame, self._api, session=session)
        ws = ZaqarSocket(opening.sock, handler, self._workers, self._limits, self._update)
        ws.session = session
        session.subscriber = self.notification_url + ws.id
        with self._lock:
            self._connections[fd] = ws
            self._by_id[ws.id] = ws
            self._epoll.register(fd, _READ)
        ws.send_raw(handshake.accept(headers["sec-websocket-key"]))
        LOG.debug("websocket %s connected", ws.id)
        if rest:  # frames sent right behind the handshake
            ws.buf = rest
            self._service(fd, select.EPOLLIN, already_read=True)

    def _refuse(self, fd: int, error: handshake.HandshakeError) -> None:
        LOG.info("refused websocket handshake: %s", error)
        opening = self._openings.get(fd)
        if opening is not None:
            try:
                opening.sock.send(handshake.refuse(error))
            except OSError as exc:
                LOG.debug("could not send the refusal: %s", exc)
        self._forget_opening(fd, close=True)

    def _forget_opening(self, fd: int, *, close: bool) -> None:
        with self._lock:
            opening = self._openings.pop(fd, None)
            if opening is not None:
                self._epoll.unregister(fd)
        if opening is not None and close:
            opening.sock.close()

    def _service(self, fd: int, events: int, already_read: bool = False) -> None:
        ws = self._connections.get(fd)
        if ws is None:
            return
        alive = not ws.dead
        try:
            if alive and events & _WRITE:
                ws.flush()
            if alive and (events & select.EPOLLIN or already_read):
                alive = ws.once()
            if events & (select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP):
                alive = False  # the peer closed or reset its end
        except Exception:
            LOG.exception("error serving websocket %s", ws.id)
            alive = False
        if not alive or ws.dead or ws.terminated:
            self._drop(ws)
        else:
            self._update(ws)

    def _update(self, ws: ZaqarSocket) -> None:
        """Make the poller wait for what the connection needs now (callable from any thread)."""
        mask = (_READ if ws.wants_read() else select.EPOLLRDHUP) | (_WRITE if ws.wants_write() else 0)
        with self._lock:
            if self._connections.get(ws.fd) is not ws:
                return
            try:
                self._epoll.modify(ws.fd, mask)
            except OSError as exc:
                LOG.debug("poller update for %s failed: %s", ws.id, exc)

    def _sweep(self, now: float) -> None:
        """Time limits: handshakes, lingering closes, peers not reading, idle connections."""
        for fd, opening in list(self._openings.items()):
            if now > opening.deadline:
                self._refuse(fd, handshake.HandshakeError("handshake took too long", "408 Request Timeout"))
        idle = self.settings.idle_timeout
        for ws in list(self._connections.values()):
            if ws.dead or (ws.discard_until is not None and now > ws.discard_until):
                self._drop(ws)
            elif ws.stalled(now):
                LOG.info("dropping websocket %s: replies unread for %ss", ws.id, self.settings.send_timeout)
                self._drop(ws)
            elif idle and now - ws.last_seen > idle:
                LOG.info("closing idle websocket %s", ws.id)
                ws.close_and_discard(1001, "Idle timeout.")
                self._update(ws)

    def push(self, connection_id: str, document: dict[str, Any]) -> bool:
        """Send a notification to a connection of this process; False if it is not here."""
        ws = self._by_id.get(connection_id)
        if ws is None or ws.dead or ws.session is None:
            return False
        binary = ws.session.push_binary
        try:
            ws.send(protocol.encode(document, binary), binary=binary)
        except Exception as exc:  # closed meanwhile: ws4py's stream is gone
            LOG.debug("push to %s failed: %s", connection_id, exc)
            return False
        return True

    def _drop(self, ws: ZaqarSocket, *, forget_now: bool = False) -> None:
        with self._lock:
            if self._connections.pop(ws.fd, None) is None:
                return
            self._by_id.pop(ws.id, None)
            try:
                self._epoll.unregister(ws.fd)
            except OSError as exc:
                LOG.debug("unregister %s: %s", ws.id, exc)
        if ws.session is not None and ws.session.bound:
            # The connection's subscriptions go with it (websocket.md §9.2), off the I/O thread.
            if forget_now:
                protocol.forget(self._api, ws.session)
            else:
                self._workers.submit(protocol.forget, self._api, ws.session)
        ws.give_up()
        if ws.sock is not None:
            ws.terminate()
        LOG.debug("websocket %s closed", ws.id)

    # -- shutdown -------------------------------------------------------------------
    def stop(self, grace: float = 2.0) -> None:
        """Close every connection with 1001, give peers ``grace`` seconds to read it, then stop."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._listener.close()
        for fd in list(self._openings):
            self._forget_opening(fd, close=True)
        connections = list(self._connections.values())
        for ws in connections:
            ws.close(1001, "Server is shutting down.")
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(ws.wants_write() for ws in connections):
            for ws in connections:
                ws.flush()
            time.sleep(0.01)
        for ws in connections:
            self._drop(ws, forget_now=True)
        self._endpoint.stop()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._epoll.close()
