"""How many worker threads each transport runs: as configured, else chosen by the message store."""

from __future__ import annotations

import pytest

from zaqar import bootstrap, conf
from zaqar.transport.auth import MAX_PENDING


@pytest.mark.parametrize("text, http_threads, ws_workers", [
    ("", 2, 2),  # the embedded SQLite store: nothing waits but for its write lock
    ("[drivers]\nmessage_store = redis\n", 4, 4),  # a round trip, often to another host
    # up to MAX_PENDING workers may wait on Keystone at once; as many more serve the others
    ("[DEFAULT]\nauth_strategy = keystone\n", 2 + MAX_PENDING, 2 + MAX_PENDING),
    ("[DEFAULT]\nauth_strategy = keystone\n[drivers]\nmessage_store = redis\n",
     4 + MAX_PENDING, 4 + MAX_PENDING),
    ("[drivers]\nmessage_store = sqlalchemy\n", 16, 16),  # waits on the network
    ("[DEFAULT]\npooling = true\n", 16, 16),  # pools may be anywhere
    ("[drivers:transport:wsgi]\nthreads = 7\n[drivers:transport:websocket]\nworkers = 3\n", 7, 3),
    ("[drivers]\nmessage_store = sqlalchemy\n[drivers:transport:wsgi]\nthreads = 2\n", 2, 16),
])
def test_worker_threads_follow_the_configuration_or_the_store(tmp_path, text, http_threads, ws_workers):
    path = tmp_path / "zaqar.conf"
    path.write_text(text)
    c = conf.load([], config_files=[str(path)])
    limits = bootstrap.limits_from(c)
    assert bootstrap.http_settings(c, limits).threads == http_threads
    assert bootstrap.websocket_settings(c, limits).workers == ws_workers
