"""The HTTP transport as a WSGI application, for uwsgi, gunicorn or any other WSGI server.

    uwsgi --http11-socket 127.0.0.1:8888 --master --processes 2 --threads 8 --enable-threads \\
          --die-on-term --module zaqar.transport.wsgi.application:application
    gunicorn -w 2 --threads 8 -b 127.0.0.1:8888 zaqar.transport.wsgi.application:application

The configuration is read as ``zaqar-server`` reads it: the file named by
``ZAQAR_CONFIG_FILE``, else oslo.config's usual places (``/etc/zaqar/zaqar.conf``,
``~/zaqar.conf``...), when the module is imported, so a bad file stops the
server from starting. The websocket transport is not served here: run
``zaqar-server`` with ``[drivers] transport = websocket`` beside it, on the same
store.

Each worker process builds its own store connections, notifier and
expired-message sweeper, at its first request. Not at import: uwsgi (by
default) and gunicorn ``--preload`` import the module in a master process and
fork the workers from it. Threads do not survive a fork, so a notifier started
at import ran only in the master, which serves nothing, and webhooks were never
sent; and SQLite connections (or a SQLite lock a master thread held at the
fork) must not be carried into a child. A process forked from one that had
built the app builds its own.

The browser console is off here unless ``[console] enabled = true``: the
address the WSGI server binds is not in ``zaqar.conf``, so the loopback-only
default of ``zaqar-server`` cannot be applied.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from oslo_config import cfg

from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.notification import Notifier

LOG = logging.getLogger("zaqar.transport.wsgi")

StartResponse = Callable[..., Any]


def build(conf: cfg.ConfigOpts) -> tuple[Any, Callable[[], None]]:
    """The configured falcon app, with the background work a server process owes its store, and its stop."""
    api = bootstrap.build_api(conf)
    sweeper = bootstrap.Sweeper(api.ctx.store, conf.gc_interval)
    sweeper.start()
    notifier = api.ctx.notifier
    if isinstance(notifier, Notifier):
        notifier.start()

    def stop() -> None:
        sweeper.stop()
        if isinstance(notifier, Notifier):
            notifier.stop()

    return bootstrap.build_wsgi_app(conf, api, own_server=False), stop


class PerProcessApp:
    """A WSGI app that builds the real one in the process serving, at its first request."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf
        self._app: Any = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        # What the parent built stays the parent's: its threads did not come along, and its store
        # connections must not be used from two processes. Left untouched, never closed here.
        self._app = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        app = self._app
        if app is None:
            try:
                app = self._start()
            except Exception as exc:
                # NOTE: e.g. the store's file cannot be created; the next request tries again.
                LOG.exception("cannot start serving")
                return _unavailable(start_response, f"{type(exc).__name__}: {exc}")
        return app(environ, start_response)

    def _start(self) -> Any:
        with self._lock:
            if self._app is None:
                app, stop = build(self._conf)
                pid = os.getpid()
                atexit.register(lambda: os.getpid() == pid and stop())  # not in a forked child
                self._app = app
            return self._app


def _unavailable(start_response: StartResponse, reason: str) -> list[bytes]:
    body = json.dumps({"title": "Service Unavailable",
                       "description": f"The server cannot reach its store: {reason}"}).encode()
    start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body))), ("Retry-After", "5")])
    return [body]


def load_conf() -> cfg.ConfigOpts:
    """The configuration a WSGI server's process serves, read as zaqar-server reads its own."""
    path = os.environ.get("ZAQAR_CONFIG_FILE")
    return zconf.load(["--config-file", path] if path else [])


application = PerProcessApp(load_conf())
