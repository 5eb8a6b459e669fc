"""Storage drivers, chosen by name from a literal table and imported lazily.

Lazy import keeps optional client libraries (redis, SQLAlchemy) optional: a
deployment on the embedded SQLite store never imports them.
"""

from __future__ import annotations

import importlib
import time

from zaqar.storage.base import Clock, DataDriver

DATA_DRIVERS: dict[str, str] = {
    "sqlite": "zaqar.storage.sqlite:DataDriver",
    "redis": "zaqar.storage.redis:DataDriver",
    "sqlalchemy": "zaqar.storage.sql:DataDriver",
}


class InvalidDriver(ValueError):
    """The configured store names no known driver."""


def load_data_driver(name: str, uri: str, *, clock: Clock = time.time) -> DataDriver:
    """Build the message store ``name`` (a key of DATA_DRIVERS) connected to ``uri``."""
    try:
        target = DATA_DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(DATA_DRIVERS))
        raise InvalidDriver(f"unknown message store {name!r}; known: {known}") from None
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    driver: DataDriver = cls(uri, clock=clock)
    return driver
