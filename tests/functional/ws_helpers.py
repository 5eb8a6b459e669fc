"""An in-process websocket server over a SQLite store, for the real-socket websocket tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zaqar.api import Api, Context
from zaqar.storage.sqlite import DataDriver
from zaqar.transport.websocket import Settings, WebSocketServer


@contextlib.contextmanager
def sqlite_api(directory: Path) -> Iterator[Api]:
    store = DataDriver(f"sqlite:///{directory}/z.sqlite")
    try:
        yield Api(Context(store=store))
    finally:
        store.close()


def serve(api: Api, **settings: Any) -> WebSocketServer:
    """A started server on a free port with 4 workers; ``settings`` override the rest."""
    server = WebSocketServer(api, Settings(port=0, workers=4, **settings))
    server.start()
    return server
