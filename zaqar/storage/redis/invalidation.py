"""The Redis store's cache invalidation channel: one pub/sub channel per key prefix.

Writes that change a cached read (queue metadata, a queue's subscriptions)
``PUBLISH`` the key they changed to ``<prefix>cache`` inside the same Lua
script or MULTI block, so the message exists exactly when the change does.
Each driver's listener subscribes to that channel on a connection of its own
from the store's pool (following a Sentinel failover like any connection).
"""

from __future__ import annotations

import time

import redis

from zaqar.storage.cache import ChannelLost

# How long a SUBSCRIBE may take to be confirmed before the attempt counts as failed.
_SUBSCRIBE_TIMEOUT = 5.0


def channel_name(prefix: str) -> str:
    return prefix + "cache"


class RedisChannel:
    """``zaqar.storage.cache.Channel`` over redis-py's PubSub."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self._pubsub = client.pubsub()
        self._name = name

    def subscribe(self) -> None:
        self._pubsub.subscribe(self._name)
        deadline = time.monotonic() + _SUBSCRIBE_TIMEOUT
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "subscribe":
                return
        raise ChannelLost(f"SUBSCRIBE {self._name} was not confirmed in {_SUBSCRIBE_TIMEOUT} s")

    def receive(self, timeout: float) -> list[str] | None:
        message = self._pubsub.get_message(timeout=timeout)
        if message is None:
            return None
        kind = message["type"]
        if kind == "message":
            return [str(message["data"])]
        if kind == "subscribe":
            # NOTE: redis-py re-subscribes by itself after some reconnects; what was
            # published in between is lost, so that counts as losing the channel.
            raise ChannelLost("the subscription was renewed behind the listener's back")
        return []

    def ping(self) -> None:
        self._pubsub.ping()

    def close(self) -> None:
        self._pubsub.close()
