"""``zaqar-server``: serve the configured transports until SIGINT or SIGTERM.

Both transports run in one process over one ``Api`` (and so one store).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from oslo_config import cfg

from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.api import Api
from zaqar.notification import Notifier
from zaqar.transport import websocket, wsgi

LOG = logging.getLogger("zaqar.server")
TRANSPORTS = ("wsgi", "websocket")


def _start_http(conf: cfg.ConfigOpts, api: Api) -> Callable[[], None]:
    settings = bootstrap.http_settings(conf, api.ctx.limits)
    server = wsgi.HttpServer(bootstrap.build_wsgi_app(conf, api), settings)
    server.start()
    host, port = server.address
    LOG.info("serving HTTP on %s:%s", host, port)
    return server.stop


def _start_websocket(conf: cfg.ConfigOpts, api: Api) -> Callable[[], None]:
    settings = bootstrap.websocket_settings(conf, api.ctx.limits)
    notifier = api.ctx.notifier if isinstance(api.ctx.notifier, Notifier) else None
    server = websocket.WebSocketServer(api, settings, notifier=notifier)
    server.start()
    host, port = server.address
    LOG.info("serving websocket on ws://%s:%s/", host, port)
    return server.stop


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    conf = zconf.load(args)
    level = logging.DEBUG if conf.debug else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    unknown = set(conf.drivers.transport) - set(TRANSPORTS)
    if unknown or not conf.drivers.transport:
        LOG.error("[drivers] transport must name wsgi and/or websocket, got %s", conf.drivers.transport)
        return 2
    api = bootstrap.build_api(conf)
    LOG.info("message store: %s", conf.drivers.message_store)
    sweeper = bootstrap.Sweeper(api.ctx.store, conf.gc_interval)
    sweeper.start()
    notifier = api.ctx.notifier
    if isinstance(notifier, Notifier):
        notifier.start()
    stops = []
    starters = {"wsgi": _start_http, "websocket": _start_websocket}
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        LOG.info("received signal %d, stopping", signum)
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name in TRANSPORTS:
            if name in conf.drivers.transport:
                stops.append(starters[name](conf, api))
        # NOTE: never a wait without a timeout. The kernel may deliver SIGTERM to any thread; Python
        # runs the handler only once the main thread wakes, and one blocked in Event.wait() does
        # not wake for a signal another thread took: the server then ignored SIGTERM (a test saw it
        # 2 runs in 5). Waking twice a second lets the handler run.
        while not stopping.wait(0.5):
            pass
    finally:
        for stop_transport in reversed(stops):
            stop_transport()
        if isinstance(notifier, Notifier):
            notifier.stop()
        sweeper.stop()
        api.ctx.store.close()
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
