"""Pooling: queues spread over many message stores; see ``driver``."""

from zaqar.storage.pooling.driver import DataDriver

__all__ = ["DataDriver"]
