"""Real database servers for the tests: where they are, and a private namespace per test.

``ZAQAR_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) and
``ZAQAR_TEST_SQL_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/zaqar_test``) and
``ZAQAR_TEST_MYSQL_URL`` (e.g. ``mysql+pymysql://root@127.0.0.1:3306/test``, MySQL or
MariaDB) point at the servers. Without them the backend's tests are skipped, except
under CI (``CI=true``), where a missing URL is an error: CI must test every
driver for real. Each test gets its own Redis key prefix, PostgreSQL
schema or MySQL database, removed afterwards, so parallel runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

REDIS_ENV, SQL_ENV, MYSQL_ENV = "ZAQAR_TEST_REDIS_URL", "ZAQAR_TEST_SQL_URL", "ZAQAR_TEST_MYSQL_URL"


def _base(env: str, required_in_ci: bool = True) -> str:
    url = os.environ.get(env)
    if not url:
        if required_in_ci and os.environ.get("CI") == "true":
            pytest.fail(f"{env} is not set: CI must run the tests against a real server")
        pytest.skip(f"{env} is not set")
    return url


def _with_query(url: str, extra: str) -> str:
    return url + ("&" if "?" in url else "?") + extra


@contextmanager
def redis_uri() -> Iterator[str]:
    """A Redis URI whose keys live under a prefix of their own, deleted afterwards."""
    import redis

    base = _base(REDIS_ENV)
    prefix = f"zaqar-test-{uuid.uuid4().hex}:"
    try:
        yield _with_query(base, f"prefix={quote(prefix)}")
    finally:
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def sql_uri() -> Iterator[str]:
    """A PostgreSQL URI whose tables live in a schema of their own, dropped afterwards."""
    import sqlalchemy

    base = _base(SQL_ENV)
    schema = f"zaqar_test_{uuid.uuid4().hex}"
    engine = sqlalchemy.create_engine(base, poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _with_query(base, f"options={quote(f'-csearch_path={schema}')}")
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def mysql_uri() -> Iterator[str]:
    """A MySQL/MariaDB URI naming a database of its own, dropped afterwards."""
    import sqlalchemy

    # NOTE: MySQL/MariaDB is the second SQL dialect, not a required server: .ci/run sets the URL
    # whenever the machine has MariaDB (it does on ours) and says so when it has not.
    base = sqlalchemy.engine.make_url(_base(MYSQL_ENV, required_in_ci=False))
    database = f"zaqar_test_{uuid.uuid4().hex}"
    engine = sqlalchemy.create_engine(base, poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE `{database}`"))
    try:
        yield base.set(database=database).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE `{database}`"))
        engine.dispose()
