"""The storage interface every message store implements.

The contract test suite (``tests/contract/``) is the executable definition of
these semantics; the docstrings say what a caller may rely on. Drivers know
nothing of HTTP, websocket or of reserved queue metadata: the API layer turns
``_default_message_ttl``, ``_dead_letter_queue`` and friends into plain
arguments (``MessageDraft.ttl``, ``DeadLetter``) before it calls down.

Time: every driver reads the current time from the ``clock`` it was built
with (seconds since the epoch, float), never from ``time.time()``, so tests
move time instead of sleeping. Ages are whole seconds, ``int(now - created)``.

Projects: ``project`` is ``None`` or a string; ``None`` is its own project.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Clock = Callable[[], float]


class Capability(enum.Enum):
    """What a driver guarantees; tests skip on a capability, never on a name."""

    FIFO = "FIFO"
    CLAIMS = "CLAIMS"
    DURABILITY = "DURABILITY"
    AOD = "AOD"
    HIGH_THROUGHPUT = "HIGH_THROUGHPUT"


@dataclasses.dataclass(frozen=True, slots=True)
class MessageDraft:
    """A message as the API layer hands it to ``post``: defaults already applied."""

    body: Any
    ttl: int
    delay: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A stored message as read at one instant.

    ``claim_id`` is the id of the last claim that took the message and was not
    released (it stays after that claim expires, until the message is claimed
    again or the claim is released); ``claimed`` says whether that claim is
    still live at the instant of the read.
    """

    id: str
    body: Any
    ttl: int
    age: int
    created: float
    claim_id: str | None
    claimed: bool
    claim_count: int
    client_id: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    id: str
    ttl: int
    age: int  # seconds since the claim was created or last renewed
    messages: list[Message]


@dataclasses.dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    metadata: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class MessageStamp:
    id: str
    created: float


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts of a queue; ``exists`` is set by stores that learn it with the counts.

    ``exists`` None means unknown: a caller that must tell an empty queue from a
    missing one asks ``QueueController.exists``. # PERF: on Redis that is a
    second round trip, which the stats script saves by answering it.
    """

    total: int
    claimed: int
    oldest: MessageStamp | None
    newest: MessageStamp | None
    exists: bool | None = None

    @property
    def free(self) -> int:
        return self.total - self.claimed


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """Move a message instead of claiming it once it was claimed ``max_claim_count`` times."""

    queue: str
    max_claim_count: int
    ttl: int | None = None


class QueueController(abc.ABC):
    """Queue records and their metadata, scoped by project.

    A queue record exists once ``create`` ran, or once a message was posted to
    the name (lazy creation by ``MessageController.post``).
    """

    @abc.abstractmethod
    def create(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> bool:
        """Create the queue; True if created, False if it existed (metadata untouched)."""

    @abc.abstractmethod
    def exists(self, project: str | None, name: str) -> bool: ...

    @abc.abstractmethod
    def get_metadata(self, project: str | None, name: str) -> dict[str, Any]:
        """The stored metadata. Raises QueueDoesNotExist."""

    @abc.abstractmethod
    def set_metadata(self, project: str | None, name: str, metadata: Mapping[str, Any]) -> None:
        """Replace the metadata. Raises QueueDoesNotExist."""

    @abc.abstractmethod
    def update_metadata(
        self,
        project: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """Atomically read the stored metadata, store ``change(current)`` and return it.

        ``change`` gets a fresh copy of the stored metadata. If it raises any
        exception, nothing is written and that exception propagates
        unchanged. Raises QueueDoesNotExist when the queue record is missing
        (``change`` is not called for a queue that is missing from the start).

        Concurrent updates of the same queue are serialized, so none is lost:
        each ``change`` sees the result of every update that completed before
        its own was stored. ``change`` may be called more than once (drivers
        with optimistic concurrency retry after losing a race, and only the
        last call's result is stored), so it must be a pure function of its
        argument.
        """

    @abc.abstractmethod
    def delete(self, project: str | None, name: str) -> None:
        """Delete the record with all its messages and claims; no error if missing."""

    @abc.abstractmethod
    def list(
        self,
        project: str | None,
        *,
        marker: str | None = None,
        limit: int = 10,
        name: str | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[QueueInfo]:
        """Queues of the project sorted by name, names strictly greater than ``marker``.

        ``name`` keeps names containing that substring (literally, no regex);
        ``filters`` keeps queues whose metadata has ``key == value`` for every item.
        """

    @abc.abstractmethod
    def count(self, project: str | None) -> int: ...

    @abc.abstractmethod
    def stats(self, project: str | None, name: str) -> QueueStats:
        """Counts over unexpired messages (delayed ones included); zeros for a missing queue.

        ``claimed`` counts messages under a live claim; ``oldest``/``newest``
        are by post order.
        """


class MessageController(abc.ABC):
    """Messages of a queue, in post order (FIFO)."""

    @abc.abstractmethod
    def post(
        self,
        project: str | None,
        queue: str,
        drafts: Sequence[MessageDraft],
        client_id: str | None,
    ) -> list[str]:
        """Store all drafts atomically (all or none) and return their ids in order.

        Creates the queue record when missing. Ids match ``[A-Za-z0-9_-]+``,
        are unique within the queue, and each tells its position in post
        order, so an id is a listing marker even after its message is gone.
        Concurrent posters each see their own messages stored in their order.
        """

    @abc.abstractmethod
    def list(
        self,
        project: str | None,
        queue: str,
        *,
        marker: str | None = None,
        limit: int = 10,
        echo: bool = False,
        client_id: str | None = None,
        include_claimed: bool = False,
        include_delayed: bool = False,
    ) -> list[Message]:
        """Up to ``limit`` unexpired messages posted after ``marker``, oldest first.

        ``echo=False`` hides messages posted with ``client_id``; claimed
        (live claim) and delayed (not yet available) messages are hidden
        unless included. A marker that is not a message id of this driver
        yields an empty list. A missing queue yields an empty list.
        """

    @abc.abstractmethod
    def get(self, project: str | None, queue: str, message_id: str) -> Message:
        """One unexpired message, claimed or delayed. Raises MessageDoesNotExist."""

    @abc.abstractmethod
    def get_many(self, project: str | None, queue: str, ids: Sequence[str]) -> list[Message]:
        """The unexpired messages among ``ids``; unknown or malformed ids are skipped."""

    @abc.abstractmethod
    def delete(
        self,
        project: str | None,
        queue: str,
        message_id: str,
        claim_id: str | None = None,
    ) -> None:
        """Delete one message; a missing message is not an error.

        Without ``claim_id``: MessageIsClaimed if the message is under a live
        claim. With ``claim_id``: deletes when it equals the message's claim
        id (live, or expired and not re-claimed); otherwise, if the message is
        under another live claim, MessageIsClaimed when ``claim_id`` names a
        live claim of this queue and ClaimNotLive when it does not; if the
        message is not under a live claim, MessageNotClaimed. A ``claim_id``
        that can never be a claim id of this driver raises ClaimNotLive.
        Nothing is deleted when an error is raised.
        """

    @abc.abstractmethod
    def delete_many(
        self,
        project: str | None,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None = None,
    ) -> None:
        """Delete the given messages, claimed or not; unknown ids are ignored.

        With ``claim_ids``: each must be the live claim of at least one of the
        targeted messages, else ClaimDoesNotExist and nothing is deleted.
        """

    @abc.abstractmethod
    def pop(self, project: str | None, queue: str, limit: int) -> list[Message]:
        """Atomically remove and return the oldest ``limit`` messages not under a live claim.

        Delay and echo are not considered. Two concurrent pops never return
        the same message.
        """


class ClaimController(abc.ABC):
    """Claims: a lease on a batch of messages, atomic under concurrency."""

    @abc.abstractmethod
    def create(
        self,
        project: str | None,
        queue: str,
        *,
        ttl: int,
        grace: int,
        limit: int,
        dead_letter: DeadLetter | None = None,
    ) -> tuple[str | None, list[Message]]:
        """Claim up to ``limit`` available messages, oldest first.

        Available: unexpired, not under a live claim, delay elapsed. Returns
        ``(claim_id, messages)``, or ``(None, [])`` when nothing was claimed.
        Two live claims never hold the same message, whatever the concurrency.

        Each claimed message whose expiry is before the claim's expiry
        (now + ttl) gets expiry = claim expiry + grace, and reports
        ``ttl = ttl + grace``; its age still counts from its post.

        With ``dead_letter``: each claim increments a message's claim_count;
        a candidate whose claim_count already reached ``max_claim_count`` is
        moved to ``dead_letter.queue`` instead (same project, same id, body
        and claim_count, no claim, expiry now + ``dead_letter.ttl`` when
        given, appended at the end of that queue, whose record is created
        when missing) and is left out of the result.
        """

    @abc.abstractmethod
    def get(self, project: str | None, queue: str, claim_id: str) -> Claim:
        """A live claim with its messages that still exist.

        Raises ClaimDoesNotExist when the id is unknown or malformed, the
        claim expired or was released, or none of its messages is left.
        """

    @abc.abstractmethod
    def update(self, project: str | None, queue: str, claim_id: str, *, ttl: int, grace: int) -> None:
        """Renew: claim expiry = now + ttl, age restarts, message expiry extended as in create.

        Raises ClaimDoesNotExist like ``get``.
        """

    @abc.abstractmethod
    def delete(self, project: str | None, queue: str, claim_id: str) -> None:
        """Release: its messages become available at once and lose the claim id.

        Unknown, malformed or expired ids are not an error.
        """


@dataclasses.dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    source: str  # the queue name
    subscriber: str
    ttl: int
    age: int  # seconds since creation or the last ttl change
    options: dict[str, Any]
    confirmed: bool


class SubscriptionController(abc.ABC):
    """Subscriptions of a queue, unique by (project, queue, subscriber).

    A subscription lives ``ttl`` seconds from its creation, or from the last
    update that set a ttl; expired ones are invisible everywhere, as if
    deleted. Ids match ``[A-Za-z0-9_-]+`` and sort in creation order; lists
    are ordered by id. Subscriptions do not depend on the queue record:
    deleting a queue keeps them (upstream), ``delete_all`` removes them.
    """

    @abc.abstractmethod
    def create(
        self, project: str | None, queue: str, subscriber: str, ttl: int, options: Mapping[str, Any]
    ) -> str:
        """Store an unconfirmed subscription and return its id.

        Raises SubscriptionAlreadyExists (carrying the live holder's id and
        whether it is confirmed) when the queue already has that subscriber.
        """

    @abc.abstractmethod
    def get(self, project: str | None, queue: str, subscription_id: str) -> Subscription:
        """Raises SubscriptionDoesNotExist (also for malformed ids and other queues)."""

    @abc.abstractmethod
    def list(
        self, project: str | None, queue: str, *, marker: str | None = None, limit: int = 10
    ) -> list[Subscription]:
        """Up to ``limit`` live subscriptions with ids strictly greater than ``marker``."""

    @abc.abstractmethod
    def update(
        self,
        project: str | None,
        queue: str,
        subscription_id: str,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Change the given fields (a new ttl counts from now; options are replaced whole).

        Raises SubscriptionDoesNotExist, or SubscriptionAlreadyExists when the
        new subscriber is taken by another subscription of the queue.
        """

    @abc.abstractmethod
    def confirm(self, project: str | None, queue: str, subscription_id: str, confirmed: bool) -> None:
        """Set the confirmed flag. Raises SubscriptionDoesNotExist."""

    @abc.abstractmethod
    def delete(self, project: str | None, queue: str, subscription_id: str) -> None:
        """No error when missing."""

    @abc.abstractmethod
    def delete_all(self, project: str | None, queue: str) -> None:
        """Remove every subscription of the queue (purge)."""

    @abc.abstractmethod
    def live(self, project: str | None, queue: str) -> list[Subscription]:
        """Every unexpired subscription of the queue, for delivering notifications."""


class DataDriver(abc.ABC):
    """The root object of a message store."""

    capabilities: frozenset[Capability] = frozenset()

    @property
    @abc.abstractmethod
    def queues(self) -> QueueController: ...

    @property
    @abc.abstractmethod
    def messages(self) -> MessageController: ...

    @property
    @abc.abstractmethod
    def claims(self) -> ClaimController: ...

    @property
    @abc.abstractmethod
    def subscriptions(self) -> SubscriptionController: ...

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """True when the backend answers; never raises."""

    @abc.abstractmethod
    def gc(self) -> int:
        """Remove expired messages and claims; return how many messages went."""

    @abc.abstractmethod
    def close(self) -> None: ...
