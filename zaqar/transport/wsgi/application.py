"""The HTTP transport as a WSGI application, for uwsgi, gunicorn or any other WSGI server.

    uwsgi --http 127.0.0.1:8888 --enable-threads --processes 2 --threads 8 \\
          --module zaqar.transport.wsgi.application:application
    gunicorn -w 2 --threads 8 -b 127.0.0.1:8888 zaqar.transport.wsgi.application:application

The configuration is read as ``zaqar-server`` reads it: the file named by
``ZAQAR_CONFIG_FILE``, else oslo.config's usual places (``/etc/zaqar/zaqar.conf``,
``~/zaqar.conf``...). Each worker process builds its own store connections,
notifier and expired-message sweeper when it imports this module, so load it
after the fork (uwsgi's default; gunicorn without ``--preload``). The
websocket transport is not served here: run ``zaqar-server`` with
``[drivers] transport = websocket`` beside it, on the same store.

The browser console is off here unless ``[console] enabled = true``: the
address the WSGI server binds is not in ``zaqar.conf``, so the loopback-only
default of ``zaqar-server`` cannot be applied.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.notification import Notifier


def build() -> Any:
    """The configured falcon app, with the background work a server process owes its store."""
    path = os.environ.get("ZAQAR_CONFIG_FILE")
    conf = zconf.load(["--config-file", path] if path else [])
    api = bootstrap.build_api(conf)
    sweeper = bootstrap.Sweeper(api.ctx.store, conf.gc_interval)
    sweeper.start()
    notifier = api.ctx.notifier
    if isinstance(notifier, Notifier):
        notifier.start()
        atexit.register(notifier.stop)
    atexit.register(sweeper.stop)
    return bootstrap.build_wsgi_app(conf, api, own_server=False)


application = build()
