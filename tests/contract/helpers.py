"""Small helpers shared by the storage contract tests."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from zaqar.storage.base import DataDriver, DeadLetter, Message, MessageDraft

PROJECT = "p"
QUEUE = "q"

# Ids are embedded in URLs and joined with commas (http-v2.md §0.8).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")

# Contains characters no id of any driver may contain, so it can never name anything.
MALFORMED_ID = "not an id!"

# Upper bound on pages when walking a listing, so a driver that never returns
# an empty page fails the test instead of hanging it.
MAX_PAGES = 1000


def post(
    store: DataDriver,
    *bodies: Any,
    queue: str = QUEUE,
    project: str | None = PROJECT,
    ttl: int = 300,
    delay: int = 0,
    client_id: str | None = None,
) -> list[str]:
    """Post one message per body (all with the same ttl and delay); return their ids."""
    drafts = [MessageDraft(body=body, ttl=ttl, delay=delay) for body in bodies]
    return store.messages.post(project, queue, drafts, client_id)


def post_n(store: DataDriver, count: int, **kwargs: Any) -> list[str]:
    """Post ``count`` messages whose bodies are 0..count-1."""
    return post(store, *range(count), **kwargs)


def ids(messages: Iterable[Message]) -> list[str]:
    return [m.id for m in messages]


def claim(
    store: DataDriver,
    *,
    queue: str = QUEUE,
    project: str | None = PROJECT,
    ttl: int = 100,
    grace: int = 60,
    limit: int = 10,
    dead_letter: DeadLetter | None = None,
) -> tuple[str | None, list[Message]]:
    return store.claims.create(project, queue, ttl=ttl, grace=grace, limit=limit, dead_letter=dead_letter)


def list_all(
    store: DataDriver,
    *,
    queue: str = QUEUE,
    project: str | None = PROJECT,
    page_size: int = 10,
    **kwargs: Any,
) -> list[Message]:
    """Walk a message listing page by page (marker = last id) until an empty page."""
    found: list[Message] = []
    marker: str | None = None
    for _ in range(MAX_PAGES):
        page = store.messages.list(project, queue, marker=marker, limit=page_size, **kwargs)
        if not page:
            return found
        assert len(page) <= page_size
        found.extend(page)
        marker = page[-1].id
    raise AssertionError("message listing never returned an empty page")


def queue_names(store: DataDriver, project: str | None = PROJECT, **kwargs: Any) -> list[str]:
    kwargs.setdefault("limit", 100)
    return [q.name for q in store.queues.list(project, **kwargs)]
