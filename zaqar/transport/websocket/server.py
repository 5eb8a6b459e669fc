"""The websocket listener: upgrades, frames and notification pushes on the reactor.

Concurrency model (zaqar/transport/reactor.py): ``workers`` threads share one
epoll; the worker handed a ready connection reads it and answers its frames
in order. No thread per connection, so thousands of idle connections cost
memory, not threads; no thread waits on a peer, so a slow or hostile peer
(slow handshake, replies left unread) delays nobody else. The notification
endpoint (endpoint.py) is one more listener on the same reactor.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from zaqar.api import Api
from zaqar.transport.auth import Authenticator
from zaqar.transport.reactor import SERVER_FULL, ConnectionLimits, Reactor
from zaqar.transport.websocket import endpoint, handshake, protocol
from zaqar.transport.websocket.connection import WebSocketChannel

LOG = logging.getLogger("zaqar.transport.websocket")
PUSH_BACKLOG = 4  # x max_buffered: unsent output past which a connection gets no more pushes


class LocalRegistry(Protocol):
    """The notifier side: where to hand notifications for this process's connections."""

    def register_local(self, base_url: str,
                       push: Callable[[str, dict[str, Any], Mapping[str, Any]], bool]) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    bind: str = "127.0.0.1"
    port: int = 9000
    workers: int = 16
    max_frame_size: int = 256 * 1024 + 64 * 1024
    idle_timeout: float = 0.0  # seconds without a frame before closing; 0 = never
    handshake_timeout: float = 10.0  # for the whole opening handshake, not per read
    send_timeout: float = 30.0  # a peer leaving replies unread this long is dropped
    max_buffered: int = 4 * 1024 * 1024  # unsent bytes beyond which a peer's frames wait
    notification_bind: str | None = None  # endpoint for connection-bound subscriptions; None: bind
    notification_port: int = 0  # 0: any free port
    notification_host: str | None = None  # host written into subscriber URLs; None: the bound address
    notification_max_connections: int = 64  # open requests to that endpoint; more get 503
    notification_timeout: float = 10.0  # seconds a push request has to arrive whole (else 408)
    # Browser pages that may connect (their Origin header), besides the websocket's own origin and,
    # on the same host, the HTTP transport's (``http_port``; None: any port of that host); "*": any.
    allowed_origins: tuple[str, ...] = ()
    http_port: int | None = None
    # Names of this machine a handshake's Host may use for "the same host" besides addresses and
    # loopback names (handshake.py: a name a page chose could be re-pointed here by DNS rebinding).
    own_hosts: tuple[str, ...] = ()
    auth: Authenticator | None = None  # with an auth strategy: ``authenticate`` gates every other action
    max_connections: int = 0  # open connections beyond which upgrades are refused with 503; 0 = unlimited
    max_connections_per_address: int = 0  # the same, per client address (IPv6: per /64)
    permessage_deflate: bool = True  # accept RFC 7692 compression when a client offers it


def refusal(reason: str) -> bytes:
    """The answer to a connection over a limit: the upgrade refused with 503, then close."""
    whom = "the server has" if reason == SERVER_FULL else "your address has"
    return handshake.refuse(handshake.HandshakeError(
        f"Service temporarily unavailable: {whom} too many open connections. "
        "Please try again in a few seconds.", "503 Service Unavailable"))


class WebSocketServer:
    def __init__(self, api: Api, settings: Settings, notifier: LocalRegistry | None = None) -> None:
        self.settings = settings
        self._api, self._notifier = api, notifier
        self._by_id: dict[str, WebSocketChannel] = {}
        self._lock = threading.Lock()
        self.origins = handshake.origin_policy(settings.allowed_origins, settings.http_port,
                                               settings.own_hosts)
        self.reactor = Reactor("zaqar-ws", settings.workers)
        bind = settings.notification_bind or settings.bind
        # NOTE: a posting server sends the message re-encoded as ASCII-only JSON, up to 3 times its size.
        self._endpoint = endpoint.NotificationEndpoint(
            self.reactor, bind, settings.notification_port, self.push, max_body=4 * settings.max_frame_size,
            max_connections=settings.notification_max_connections, timeout=settings.notification_timeout)
        host = settings.notification_host or bind
        self.notification_url = f"http://{host}:{self._endpoint.port}/"
        limits = ConnectionLimits(settings.max_connections, settings.max_connections_per_address, refusal)
        self._listener = self.reactor.listen(settings.bind, settings.port, self._channel, limits=limits)
        # Deleting a closed connection's subscriptions calls the store: never on the sweeper.
        self._cleanup = ThreadPoolExecutor(1, thread_name_prefix="zaqar-ws-cleanup")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def __len__(self) -> int:
        return len(self.reactor)

    def _channel(self, reactor: Reactor, sock: Any, address: tuple[str, int]) -> WebSocketChannel:
        return WebSocketChannel(self, reactor, sock, address)

    def start(self) -> None:
        if self._notifier is not None:
            self._notifier.register_local(self.notification_url, self.push_subscribed)
        self.reactor.start()

    # -- the channels' side ---------------------------------------------------------------------
    def answer(self, session: protocol.Session, data: bytes, binary: bool) -> bytes:
        return protocol.handle_frame(self._api, data, binary, session, self.settings.auth)

    def push_token(self, connection_id: str) -> str:
        """What a push to ``connection_id`` must carry to be relayed by the notification endpoint."""
        return self._endpoint.token(connection_id)

    def opened(self, channel: WebSocketChannel) -> None:
        with self._lock:
            self._by_id[channel.id] = channel
        LOG.debug("websocket %s connected", channel.id)

    def closed(self, channel: WebSocketChannel) -> None:
        with self._lock:
            self._by_id.pop(channel.id, None)
        if channel.session.bound:
            # The connection's subscriptions go with it (websocket.md §9.2).
            self._cleanup.submit(protocol.forget, self._api, channel.session)
        LOG.debug("websocket %s closed", channel.id)

    def push_subscribed(self, connection_id: str, document: dict[str, Any],
                        post_headers: Mapping[str, Any]) -> bool:
        """The notifier's in-process delivery: the same token check as the notification endpoint's.

        Without it, anyone who learnt a connection id could subscribe a webhook of their own
        queue to ``notification_url + id`` and have this process push into that connection.
        """
        given = post_headers.get(protocol.PUSH_TOKEN_HEADER)
        expected = self.push_token(connection_id).encode()
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected):
            return False
        return self.push(connection_id, document)

    def push(self, connection_id: str, document: dict[str, Any]) -> bool:
        """Send a notification to a connection of this process; False if it is not here.

        A peer whose unsent output reaches PUSH_BACKLOG x ``max_buffered`` gets no
        more pushes: it is closed (1008) by the next sweep, and its client lists the
        queue when it reconnects. Pushes come from other threads whatever the peer
        reads, so without a bound a slow reader grew the server's memory for good
        (reading a little now and then kept ``send_timeout`` from ever firing).
        """
        channel = self._by_id.get(connection_id)
        if channel is None or channel.closing:
            return False
        if channel.buffered >= PUSH_BACKLOG * self.settings.max_buffered:
            channel.overflowed()
            return True  # handled: dropped with the connection, not worth a webhook retry
        binary = channel.session.push_binary
        return channel.send_message(protocol.encode(document, binary), binary)

    # -- shutdown -------------------------------------------------------------------------------
    def stop(self, grace: float = 2.0) -> None:
        """Close every connection with 1001, give peers ``grace`` seconds to read it, then stop."""
        self.reactor.stop_listening()
        deadline = time.monotonic() + grace
        channels = self.reactor.channels()
        opened = [c for c in channels if isinstance(c, WebSocketChannel) and c.id in self._by_id]
        while opened and time.monotonic() < deadline:  # a worker may own one right now: retry
            opened = [c for c in opened if not c.closed
                      and not self.reactor.own(c, c.close_with, 1001, "Server is shutting down.", grace)]
            if opened:
                time.sleep(0.005)
        while time.monotonic() < deadline and any(c.buffered for c in channels if not c.closed):
            time.sleep(0.01)
        self.reactor.stop()  # the notification endpoint's listener and requests included
        self._cleanup.shutdown(wait=True)
