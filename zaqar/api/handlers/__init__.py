"""One module per resource; importing them fills the operation table."""

from __future__ import annotations

import importlib

MODULES = ("queues", "messages", "claims", "subscriptions", "system", "pools", "flavors", "share")


def load() -> None:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
