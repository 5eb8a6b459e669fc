"""Bare-framework servers that answer the benchmarks' requests without doing any work.

    python -m benchmarks.ceilings http --port P [--threads T] [--server builtin|cheroot]
    python -m benchmarks.ceilings websocket --port P [--workers W]

Why: zaqar's server CPU per message is framework (socket I/O, HTTP parsing,
WSGI, falcon routing; websocket framing) plus zaqar's own work (validation,
the API layer, the store, logging). These servers pay only the first part, so
``transport_bench`` and ``harness`` run their scenarios against them too and divide: zaqar /
ceiling says how much of a message's cost zaqar could ever remove, and what
the framework alone costs on this machine.

* ``http``: a falcon WSGI app on zaqar's own HTTP server (``T`` threads; the
  server zaqar-server runs, so the ratio is zaqar's work over its framework),
  or under cheroot with ``--server cheroot`` (the server zaqar used before).
  ``POST /v2/queues/{q}/messages`` reads the body and answers 201 with one
  constant resource per message (counted by the ``"body"`` keys, not parsed);
  ``POST /v2/queues/{q}/claims`` reads the body and answers 201 with 10
  constant messages whose hrefs carry a ``claim_id``;
  ``DELETE /v2/queues/{q}/messages/{id}`` answers 204;
  ``GET /v2/queues/{q}/stats`` 200 with constant stats; ``GET /v2/queues`` 200
  with a constant page of 10 queues; ``GET /v2/ping`` 204. Nothing is
  validated, logged or stored.
* ``websocket``: ws4py's own server (its wsgiref integration: one thread does
  the upgrade handshakes, ws4py's ``WebSocketManager`` epoll thread reads and
  unmasks every frame with ws4py's framing, as zaqar's listener does). Every
  frame is decoded (JSON for text, MessagePack for binary), and a ``W``-thread
  pool answers it (``W`` 0: the I/O thread does), as zaqar's workers do, with
  zaqar's envelope ``{"request": <echo>, "headers": {"status": S}, "body": ...}``
  in the frame's encoding: ``message_post`` 201 with one id per message,
  ``claim_create`` 201 with 10 messages and a claim id, ``message_delete`` 204,
  ``queue_get_stats`` 200 with constant stats, ``queue_list`` 200 with 10
  queues, anything else 400.

SIGTERM and SIGINT stop both.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack

from benchmarks import wsgi_servers

HOST = "127.0.0.1"
CLAIM_ID = "5f0e2a5c2b9e11e3b19171861300734c"
MAX_POST = 20  # [transport] max_messages_per_page default: the most messages one post may carry
IDS = [f"{i:016x}aaaaaaaa" for i in range(1, MAX_POST + 1)]
BODY = {"event": "bench", "thread": 0, "seq": 0, "data": "x" * 64}
POSTED = [json.dumps({"resources": [f"/v2/queues/q/messages/{i}" for i in IDS[:n]]}).encode()
          for n in range(MAX_POST + 1)]  # by the number of messages posted
CLAIMED = json.dumps({"messages": [
    {"id": i, "href": f"/v2/queues/q/messages/{i}?claim_id={CLAIM_ID}", "ttl": 300, "age": 0, "body": BODY}
    for i in IDS[:10]]}).encode()


def _stats(stamp: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    """zaqar's stats of a queue holding 100 free messages; ``stamp`` names a message (href or id)."""

    def end(message_id: str) -> dict[str, Any]:
        return {**stamp(message_id), "age": 0, "created": "2026-01-01T00:00:00Z"}

    return {"messages": {"claimed": 0, "free": 100, "total": 100,
                         "oldest": end(IDS[0]), "newest": end(IDS[9])}}


STATS = json.dumps(_stats(lambda i: {"href": f"/v2/queues/q/messages/{i}"})).encode()
QUEUES = json.dumps({"queues": [{"name": f"q-{k}", "href": f"/v2/queues/q-{k}"} for k in range(10)],
                     "links": [{"rel": "next", "href": "/v2/queues?limit=10&marker=q-9"}]}).encode()
WS_BODIES: dict[str, tuple[int, Any]] = {
    "claim_create": (201, {"claim_id": CLAIM_ID, "messages": [
        {"id": i, "claim_id": CLAIM_ID, "ttl": 300, "age": 0, "body": BODY} for i in IDS[:10]]}),
    "message_delete": (204, {}),
    "queue_get_stats": (200, _stats(lambda i: {"id": i})),
    "queue_list": (200, {"queues": [{"name": f"q-{k}"} for k in range(10)]}),
}


def _stop_on_signals() -> threading.Event:
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopping.set())
    return stopping


def http_app() -> Any:
    import falcon

    class Messages:
        def on_post(self, req: falcon.Request, resp: falcon.Response, queue_name: str) -> None:
            posted = min(MAX_POST, req.bounded_stream.read().count(b'"body"'))
            resp.status, resp.content_type, resp.data = 201, falcon.MEDIA_JSON, POSTED[posted]

    class Claims:
        def on_post(self, req: falcon.Request, resp: falcon.Response, queue_name: str) -> None:
            req.bounded_stream.read()
            resp.status, resp.content_type, resp.data = 201, falcon.MEDIA_JSON, CLAIMED

    class Message:
        def on_delete(self, req: falcon.Request, resp: falcon.Response, queue_name: str,
                      message_id: str) -> None:
            resp.status = 204

    class Stats:
        def on_get(self, req: falcon.Request, resp: falcon.Response, queue_name: str) -> None:
            resp.status, resp.content_type, resp.data = 200, falcon.MEDIA_JSON, STATS

    class Queues:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.status, resp.content_type, resp.data = 200, falcon.MEDIA_JSON, QUEUES

    class Ping:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.status = 204

    app = falcon.App()
    app.add_route("/v2/queues/{queue_name}/messages", Messages())
    app.add_route("/v2/queues/{queue_name}/claims", Claims())
    app.add_route("/v2/queues/{queue_name}/messages/{message_id}", Message())
    app.add_route("/v2/queues/{queue_name}/stats", Stats())
    app.add_route("/v2/queues", Queues())
    app.add_route("/v2/ping", Ping())
    return app


def serve_http(port: int, threads: int, server: str = "builtin") -> None:
    if server == "cheroot":
        wsgi_servers.run_cheroot(http_app(), port, threads, "ceiling")
        return
    from zaqar.transport.wsgi import HttpServer, Settings

    http = HttpServer(http_app(), Settings(bind=HOST, port=port, threads=threads))
    http.start()
    stopping = _stop_on_signals()
    while not stopping.wait(0.5):
        pass
    http.stop()


def answer(data: bytes, binary: bool) -> bytes:
    """zaqar's reply envelope for one frame, in the frame's encoding; no validation."""
    doc = msgpack.unpackb(data, raw=False) if binary else json.loads(data)
    action = doc.get("action")
    if action == "message_post":
        status, body = 201, {"message_ids": IDS[:len(doc.get("body", {}).get("messages", ()))]}
    else:
        status, body = WS_BODIES.get(action, (400, {"error": f"{action} is not a valid action"}))
    echo = {"action": action, "body": doc.get("body", {}), "headers": doc.get("headers", {}), "api": "v2"}
    reply = {"request": echo, "headers": {"status": status}, "body": body}
    return msgpack.packb(reply, use_bin_type=True) if binary else json.dumps(reply).encode()


def serve_websocket(port: int, workers: int) -> None:
    from wsgiref.simple_server import make_server

    from ws4py.server.wsgirefserver import WebSocketWSGIRequestHandler, WSGIServer
    from ws4py.server.wsgiutils import WebSocketWSGIApplication
    from ws4py.websocket import WebSocket

    pool = ThreadPoolExecutor(workers, thread_name_prefix="ceiling-ws") if workers else None

    class CeilingSocket(WebSocket):  # type: ignore[misc]
        def _reply(self, data: bytes, binary: bool) -> None:
            self.send(answer(data, binary), binary)

        def received_message(self, message: Any) -> None:
            data, binary = bytes(message.data), bool(message.is_binary)
            if pool is None:
                self._reply(data, binary)
            else:
                pool.submit(self._reply, data, binary)

    class QuietHandler(WebSocketWSGIRequestHandler):  # type: ignore[misc]
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    server = make_server(HOST, port, server_class=WSGIServer, handler_class=QuietHandler,
                         app=WebSocketWSGIApplication(handler_cls=CeilingSocket))
    server.initialize_websockets_manager()
    stopping = _stop_on_signals()
    serving = threading.Thread(target=server.serve_forever, name="handshakes", daemon=True)
    serving.start()
    try:
        while not stopping.wait(0.5) and serving.is_alive():
            pass
    finally:
        server.shutdown()
        server.server_close()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceilings",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("http", "websocket"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16, help="server threads (http)")
    parser.add_argument("--server", choices=("builtin", "cheroot"), default="builtin",
                        help="the HTTP server under the falcon app (http)")
    parser.add_argument("--workers", type=int, default=16,
                        help="threads answering frames (websocket; 0: the I/O thread answers)")
    args = parser.parse_args(argv)
    if args.kind == "http":
        serve_http(args.port, args.threads, args.server)
    else:
        serve_websocket(args.port, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
