"""The cache's listener on its own: a channel that cannot be had, or that goes silent.

Redis pub/sub is the channel here (the PostgreSQL one shares the listener);
a forwarding proxy that can freeze plays a connection that dies without a
word, as one through a crashed router does. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests import backends
from zaqar.storage.cache import Cache
from zaqar.storage.redis.driver import parse_uri
from zaqar.storage.redis.invalidation import RedisChannel

DEADLINE = 10.0


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.005)


class FreezingProxy:
    """Forwards TCP to ``target``; while frozen it holds every byte, closing nothing."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self._sockets: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self._target)
                self._sockets += [client, upstream]
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)

    def close(self) -> None:
        self.flowing.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def redis_settings() -> Iterator[dict[str, object]]:
    with backends.redis_uri() as uri:
        yield parse_uri(uri).connection


def test_a_channel_that_goes_silent_is_given_up_and_the_cache_flushed(redis_settings):
    target = (str(redis_settings.get("host", "127.0.0.1")), int(redis_settings.get("port", 6379)))
    proxy = FreezingProxy(target)
    client = redis.Redis(**{**redis_settings, "host": "127.0.0.1", "port": proxy.port, "socket_timeout": 30})
    cache = Cache(lambda: RedisChannel(client, "silent-test"), name="silent", heartbeat=0.3)
    try:
        assert cache.wait_active(DEADLINE)
        assert cache.get("k", lambda: "kept") == "kept"
        assert cache.get("k", lambda: "not asked") == "kept"
        proxy.flowing.clear()  # no error, no close: the connection just stops answering
        eventually(lambda: not cache.active, "the unanswered ping ends the subscription")
        assert cache.get("k", lambda: "from the store") == "from the store"
        proxy.flowing.set()
        eventually(lambda: cache.active, "the listener subscribes again once the network is back")
    finally:
        cache.close()
        client.close()
        proxy.close()


def test_while_the_channel_cannot_be_subscribed_every_read_goes_to_the_store():
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    cache = Cache(lambda: RedisChannel(dead, "nowhere"), name="dead")
    loads: list[int] = []
    try:
        for n in range(3):
            assert cache.get("k", lambda n=n: loads.append(n) or n) == n
        assert loads == [0, 1, 2] and not cache.active
    finally:
        cache.close()
