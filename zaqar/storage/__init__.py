"""Storage drivers, chosen by name from a literal table and imported lazily.

Lazy import keeps optional client libraries (redis, SQLAlchemy) optional: a
deployment on the embedded SQLite store never imports them.
"""

from __future__ import annotations

import importlib
import time

from zaqar.storage.base import Clock, DataDriver
from zaqar.storage.control import ControlDriver

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


CONTROL_DRIVERS: dict[str, str] = {
    "sqlite": "zaqar.storage.sqlite.control:ControlDriver",
    "sqlalchemy": "zaqar.storage.sql.control:ControlDriver",
}

# A pool names only a URI; its scheme says which message-store driver serves it.
_URI_SCHEMES: dict[str, str] = {
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+sentinel": "redis",
    "postgresql": "sqlalchemy",
    "mysql": "sqlalchemy",
    "mariadb": "sqlalchemy",
}


def driver_for_uri(uri: str) -> str:
    """The DATA_DRIVERS name serving ``uri`` (``postgresql+psycopg://`` -> sqlalchemy).

    Raises:
        InvalidDriver: no driver serves that scheme.
    """
    scheme = uri.partition("://")[0].lower()
    name = _URI_SCHEMES.get(scheme) or _URI_SCHEMES.get(scheme.partition("+")[0])
    if name is None or "://" not in uri:
        raise InvalidDriver(f"no message store serves {uri!r}")
    return name


def load_control_driver(name: str, uri: str) -> ControlDriver:
    """Build the management store ``name`` (a key of CONTROL_DRIVERS) connected to ``uri``."""
    try:
        target = CONTROL_DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(CONTROL_DRIVERS))
        raise InvalidDriver(f"unknown management store {name!r}; known: {known}") from None
    module, _, attr = target.partition(":")
    driver: ControlDriver = getattr(importlib.import_module(module), attr)(uri)
    return driver


def driver_class(uri: str) -> type[DataDriver]:
    """The message-store class serving ``uri``, imported on first use. Raises InvalidDriver."""
    module, _, attr = DATA_DRIVERS[driver_for_uri(uri)].partition(":")
    cls: type[DataDriver] = getattr(importlib.import_module(module), attr)
    return cls


def probe(uri: str) -> str | None:
    """Why ``uri`` cannot serve as a pool, or None when its store answers.

    Connects once and closes again: a pool is only registered once it works,
    since new queues are placed on it right away (http-v2.md section 9).
    """
    try:
        driver = load_data_driver(driver_for_uri(uri), uri)
    except Exception as exc:  # any failure to connect means "cannot connect"; the reason is logged
        return f"{type(exc).__name__}: {exc}"
    try:
        return None if driver.is_alive() else "the store does not answer"
    finally:
        driver.close()
