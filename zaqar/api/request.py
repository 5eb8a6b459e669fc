"""The two value objects every transport exchanges with the API layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One operation call, already decoded by a transport.

    ``params`` holds path parameters, query parameters and body fields under
    the websocket protocol's names (``queue_name``, ``messages``, ``ttl`` ...).
    ``content_length`` is the raw body size when the transport knows it
    (HTTP); size limits then apply to it, as upstream measures them, instead
    of to the re-encoded parameter. ``connection`` is the subscriber URL of
    the persistent connection the request arrived on, when the transport has
    one: a subscription created without a subscriber is bound to it.
    """

    action: str
    project_id: str | None = None
    client_id: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    roles: frozenset[str] = frozenset()
    content_length: int | None = None
    body_error: Exception | None = None
    connection: str | None = None

    def raise_body_error(self) -> None:
        """Report a body the transport could not decode, once the checks that come first ran.

        The contract checks the declared size before parsing (http-v2.md §3.3,
        §4.2), and only the handler knows the size limit that applies.
        """
        if self.body_error is not None:
            raise self.body_error


@dataclasses.dataclass(slots=True)
class Response:
    """What an operation produced.

    ``body`` is the canonical (HTTP v2) representation. ``data`` keeps the
    domain result so a transport whose documented representation differs
    (websocket.md §6.2) can present it without recomputing anything.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    data: Any = None
