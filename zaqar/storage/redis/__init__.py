"""The Redis message store (``redis://host:port/db?prefix=...``); see ``driver``."""

from zaqar.storage.redis.driver import DataDriver

__all__ = ["DataDriver"]
