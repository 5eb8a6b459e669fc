"""Wiring: configuration → settings → storage → one Api → every transport.

The only module besides ``zaqar.conf`` that reads oslo.config; components
get plain settings, and every transport gets the same ``Api``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time

from oslo_config import cfg

from zaqar import storage
from zaqar.api import Api, Context, Features, Limits
from zaqar.conf import policy
from zaqar.notification import Notifier
from zaqar.notification.confirmation import Signer
from zaqar.notification.mail import Mailer
from zaqar.storage.base import DataDriver
from zaqar.transport import websocket


def limits_from(conf: cfg.ConfigOpts) -> Limits:
    values = {f.name: conf.transport[f.name] for f in dataclasses.fields(Limits)}
    values["subscriber_types"] = tuple(values["subscriber_types"])
    return Limits(**values)


def features_from(conf: cfg.ConfigOpts) -> Features:
    return Features(admin_mode=conf.admin_mode, pooling=conf.pooling, enable_checksum=conf.enable_checksum)


def message_store_uri(conf: cfg.ConfigOpts) -> str:
    name = conf.drivers.message_store
    group = f"drivers:message_store:{name}"
    uri = conf[group].uri if group in conf else None
    if uri:
        return str(uri)
    if name == "sqlite":
        return f"sqlite:///{os.path.abspath(os.path.join(conf.state_path, 'zaqar.sqlite'))}"
    raise storage.InvalidDriver(f"[{group}] uri is required for the {name} message store")


def build_store(conf: cfg.ConfigOpts) -> DataDriver:
    return storage.load_data_driver(conf.drivers.message_store, message_store_uri(conf))


def build_notifier(conf: cfg.ConfigOpts, store: DataDriver) -> Notifier:
    group = conf.notification
    key = conf.signed_url.secret_key
    return Notifier(
        store,
        workers=group.max_notifier_workers,
        timeout=group.webhook_timeout,
        require_confirmation=group.require_confirmation,
        signer=Signer(key, conf.transport.default_subscription_ttl) if key else None,
        mailer=Mailer(group.smtp_host, group.smtp_port, group.sender),
    )


def build_api(conf: cfg.ConfigOpts, store: DataDriver | None = None) -> Api:
    store = store if store is not None else build_store(conf)
    ctx = Context(
        store=store,
        notifier=build_notifier(conf, store),
        limits=limits_from(conf),
        features=features_from(conf),
        authorize=policy.authorizer(conf),
    )
    return Api(ctx)


def websocket_settings(conf: cfg.ConfigOpts, limits: Limits) -> websocket.Settings:
    group = conf["drivers:transport:websocket"]
    notify_bind = group.notification_bind or group.bind
    wildcard = notify_bind in ("0.0.0.0", "::", "")
    return websocket.Settings(
        notification_bind=notify_bind,
        notification_port=group.notification_port,
        notification_host=socket.gethostname() if wildcard else notify_bind,
        bind=group.bind,
        port=group.port,
        workers=group.workers,
        max_frame_size=group.max_frame_size or limits.max_messages_post_size + 64 * 1024,
        idle_timeout=group.idle_timeout,
        send_timeout=group.send_timeout,
        handshake_timeout=group.handshake_timeout,
    )


class Sweeper(threading.Thread):
    """Deletes expired messages off the request path, every ``interval`` seconds."""

    def __init__(self, store: DataDriver, interval: float) -> None:
        super().__init__(name="zaqar-gc", daemon=True)
        self._store, self._interval = store, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        log = logging.getLogger("zaqar.gc")
        while not self._stop_event.wait(self._interval):
            started = time.perf_counter()
            try:
                removed = self._store.gc()
            except Exception:
                log.exception("expired-message sweep failed; retrying in %ss", self._interval)
                continue
            if removed:
                took = (time.perf_counter() - started) * 1e3
                log.info("swept %d expired messages in %.1fms", removed, took)

    def stop(self) -> None:
        self._stop_event.set()
