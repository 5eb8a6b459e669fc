"""``zaqar-server``: serve the configured transports until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from cheroot import wsgi as cheroot_wsgi

from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.transport import wsgi

LOG = logging.getLogger("zaqar.server")


def _http_server(conf, api) -> cheroot_wsgi.Server:  # type: ignore[no-untyped-def]
    group = conf["drivers:transport:wsgi"]
    # PERF: cheroot (CherryPy's server): a thread pool with HTTP/1.1 keep-alive, pure Python,
    # embeddable next to the websocket listener in one process. Compared in benchmarks/.
    server = cheroot_wsgi.Server((group.bind, group.port), wsgi.build_app(api), numthreads=group.threads,
                                 server_name="zaqar")
    server.shutdown_timeout = 5
    return server


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    conf = zconf.load(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    unknown = set(conf.drivers.transport) - {"wsgi"}
    if unknown:
        LOG.error("unknown transport(s) %s; available: wsgi", ", ".join(sorted(unknown)))
        return 2
    api = bootstrap.build_api(conf)
    sweeper = bootstrap.Sweeper(api.ctx.store, conf.gc_interval)
    sweeper.start()
    server = _http_server(conf, api)
    server.prepare()
    bound = server.bind_addr
    LOG.info("serving HTTP on %s:%s (message store: %s)", bound[0], bound[1], conf.drivers.message_store)
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        LOG.info("received signal %d, stopping", signum)
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    serving = threading.Thread(target=server.serve, name="zaqar-http", daemon=True)
    serving.start()
    try:
        while not stopping.wait(0.5) and serving.is_alive():
            pass
    finally:
        server.stop()
        serving.join(timeout=10)
        sweeper.stop()
        api.ctx.store.close()
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
