"""Serve the zaqar falcon app under a chosen WSGI server, for ``http_bench --compare-wsgi``.

    python -m benchmarks.wsgi_servers {builtin,cheroot,waitress,gunicorn,uwsgi} --port P [--threads T]
        [--config-file F]

The app is built exactly as ``zaqar-server`` builds it (``bootstrap.build_api``
+ ``transport.wsgi.build_app``, INFO request logging to stderr, the expired
message sweeper), so the only thing that differs between runs is the server:

* builtin: zaqar's own HTTP server (``zaqar.transport.wsgi.HttpServer``, what
  zaqar-server runs) with ``T`` worker threads;
* cheroot: ``cheroot.wsgi.Server`` with ``numthreads=T`` (what zaqar-server used before);
* waitress: ``waitress.create_server(threads=T)`` (asyncore I/O loop + T worker threads);
* gunicorn: one ``gthread`` worker with ``threads=T`` via ``BaseApplication``; the app,
  and so the sqlite connection, is built in the worker after the fork;
* uwsgi: one uwsgi worker process with ``T`` threads and its HTTP/1.1 socket
  (``--http11-socket``), loading ``zaqar.transport.wsgi.application`` as the
  README documents for production (``pip install uwsgi``: it compiles).

SIGTERM and SIGINT stop each of them cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.transport import wsgi

LOG = logging.getLogger("zaqar.bench.wsgi")
HOST = "127.0.0.1"


class App:
    """The zaqar WSGI app plus what zaqar-server runs beside it; ``close`` releases the store."""

    def __init__(self, config_args: Sequence[str]) -> None:
        conf = zconf.load(list(config_args))
        self.api = bootstrap.build_api(conf)
        self.sweeper = bootstrap.Sweeper(self.api.ctx.store, conf.gc_interval)
        self.sweeper.start()
        self.wsgi = wsgi.build_app(self.api)

    def close(self) -> None:
        self.sweeper.stop()
        self.api.ctx.store.close()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_cheroot(app: Any, port: int, threads: int, name: str) -> None:
    """Serve ``app`` under cheroot (as zaqar-server does) until SIGTERM or SIGINT, then stop it."""
    import threading

    from cheroot import wsgi as cheroot_wsgi

    server = cheroot_wsgi.Server((HOST, port), app, numthreads=threads, server_name=name)
    server.shutdown_timeout = 5
    server.prepare()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
    serving = threading.Thread(target=server.serve, name="cheroot", daemon=True)
    serving.start()
    LOG.info("cheroot serving %s on %s:%d with %d threads", name, HOST, port, threads)
    try:
        while not stopping.wait(0.5) and serving.is_alive():
            pass
    finally:
        server.stop()
        serving.join(timeout=10)


def serve_cheroot(config_args: Sequence[str], port: int, threads: int) -> None:
    app = App(config_args)
    try:
        run_cheroot(app.wsgi, port, threads, "zaqar")
    finally:
        app.close()


def serve_waitress(config_args: Sequence[str], port: int, threads: int) -> None:
    import waitress

    app = App(config_args)
    server = waitress.create_server(app.wsgi, host=HOST, port=port, threads=threads, ident="zaqar")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    LOG.info("waitress serving on %s:%d with %d threads", HOST, port, threads)
    try:
        server.run()  # turns KeyboardInterrupt into a clean shutdown
    finally:
        app.close()


def serve_gunicorn(config_args: Sequence[str], port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.app: App | None = None
            super().__init__()

        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"{HOST}:{port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": threads,
                "graceful_timeout": 5,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:  # runs in the worker, after the fork
            self.app = App(config_args)
            return self.app.wsgi

    LOG.info("gunicorn serving on %s:%d, 1 gthread worker with %d threads", HOST, port, threads)
    Gunicorn().run()


def serve_builtin(config_args: Sequence[str], port: int, threads: int) -> None:
    import threading

    app = App(config_args)
    server = wsgi.HttpServer(app.wsgi, wsgi.Settings(bind=HOST, port=port, threads=threads))
    server.start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.set())
    LOG.info("built-in server on %s:%d with %d threads", HOST, port, threads)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        app.close()


def serve_uwsgi(config_args: Sequence[str], port: int, threads: int) -> None:
    import os
    import shutil

    binary = shutil.which("uwsgi") or os.path.join(os.path.dirname(sys.executable), "uwsgi")
    if config_args:
        os.environ["ZAQAR_CONFIG_FILE"] = config_args[-1]
    os.execv(binary, [binary, "--http11-socket", f"{HOST}:{port}", "--master", "--processes", "1",
                      "--threads", str(threads), "--enable-threads", "--die-on-term", "--disable-logging",
                      "--module", "zaqar.transport.wsgi.application:application"])


SERVERS = {"builtin": serve_builtin, "cheroot": serve_cheroot, "waitress": serve_waitress,
           "gunicorn": serve_gunicorn, "uwsgi": serve_uwsgi}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--config-file",
                        help="zaqar.conf to read (state_path etc.); its bind/port/threads are ignored")
    args = parser.parse_args(argv)
    # the same logging zaqar-server sets up, so every server pays for the same request log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config_args = ["--config-file", args.config_file] if args.config_file else []
    SERVERS[args.server](config_args, args.port, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
