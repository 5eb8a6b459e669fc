"""Pooling: queues spread over many message stores; see ``driver``."""

from zaqar.storage.pooling.driver import DataDriver, held_queues

__all__ = ["DataDriver", "held_queues"]
