"""Errors raised by storage drivers.

Every driver raises only these, so the API layer maps them to statuses in one
table (``zaqar.api.errors``) whatever the backend. Each error keeps its context
as attributes and renders its text from a template, because the texts are part
of the wire contract (they become 404/409 descriptions).

    StorageError
    ├── DoesNotExist
    │   ├── QueueDoesNotExist
    │   ├── MessageDoesNotExist
    │   ├── ClaimDoesNotExist
    │   ├── SubscriptionDoesNotExist
    │   ├── PoolDoesNotExist
    │   ├── FlavorDoesNotExist
    │   └── QueueNotMapped      the catalog places no such queue on a pool
    ├── MessageIsClaimed        delete without the live claim's id (403)
    ├── MessageNotClaimed       a claim id given, but the message is free (400)
    ├── ClaimNotLive            a claim id that names no live claim (400)
    ├── Conflict
    │   ├── MessageConflict
    │   ├── SubscriptionAlreadyExists
    │   └── PoolUriInUse        another pool already has this URI (409)
    ├── PoolInUseByFlavor       deleting a pool a flavor still lists (403)
    ├── NoPoolFound             pooling on, but no pool (of the flavor) to place a queue on
    └── BackendUnavailable      the database cannot be reached (503)
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error a storage driver raises on purpose."""

    template = "Storage error"

    def __init__(self, **context: object) -> None:
        self.context = context
        super().__init__(self.template.format(**context))


class DoesNotExist(StorageError):
    template = "Resource does not exist"


class QueueDoesNotExist(DoesNotExist):
    template = "Queue {name} does not exist for project {project}"

    def __init__(self, name: str, project: str | None) -> None:
        super().__init__(name=name, project=project)


class MessageDoesNotExist(DoesNotExist):
    template = "Message {mid} does not exist in queue {queue} for project {project}"

    def __init__(self, mid: str, queue: str, project: str | None) -> None:
        super().__init__(mid=mid, queue=queue, project=project)


class ClaimDoesNotExist(DoesNotExist):
    template = "Claim {cid} does not exist in queue {queue} for project {project}"

    def __init__(self, cid: str, queue: str, project: str | None) -> None:
        super().__init__(cid=cid, queue=queue, project=project)


class SubscriptionDoesNotExist(DoesNotExist):
    template = "Subscription {sid} does not exist"

    def __init__(self, sid: str) -> None:
        super().__init__(sid=sid)


class PoolDoesNotExist(DoesNotExist):
    template = "Pool {name} does not exist"

    def __init__(self, name: str) -> None:
        super().__init__(name=name)


class FlavorDoesNotExist(DoesNotExist):
    template = "Flavor {name} does not exist"

    def __init__(self, name: str, project: str | None) -> None:
        super().__init__(name=name, project=project)


class QueueNotMapped(DoesNotExist):
    template = "No pool found for queue {name} for project {project}"

    def __init__(self, name: str, project: str | None) -> None:
        super().__init__(name=name, project=project)


class PoolInUseByFlavor(StorageError):
    template = "This pool is used by flavors {flavor}; It cannot be deleted."

    def __init__(self, name: str, flavor: str) -> None:
        super().__init__(name=name, flavor=flavor)


class NoPoolFound(StorageError):
    template = "No pools registered{suffix}"

    def __init__(self, flavor: str | None = None) -> None:
        super().__init__(flavor=flavor, suffix=f" for flavor {flavor}" if flavor else "")


class MessageIsClaimed(StorageError):
    template = "Message {mid} is claimed"

    def __init__(self, mid: str) -> None:
        super().__init__(mid=mid)


class MessageNotClaimed(StorageError):
    template = "Message {mid} is no longer claimed"

    def __init__(self, mid: str) -> None:
        super().__init__(mid=mid)


class ClaimNotLive(StorageError):
    template = "Message {mid} is not claimed by {cid}"

    def __init__(self, mid: str, cid: str) -> None:
        super().__init__(mid=mid, cid=cid)


class Conflict(StorageError):
    template = "Conflict"


class MessageConflict(Conflict):
    template = (
        "Message could not be enqueued due to a conflict with one or more other "
        "messages that are already in queue {queue} for project {project}"
    )

    def __init__(self, queue: str, project: str | None) -> None:
        super().__init__(queue=queue, project=project)


class SubscriptionAlreadyExists(Conflict):
    """The (project, queue, subscriber) triple is taken; ``sid`` and ``confirmed`` describe the holder."""

    template = (
        "Such subscription already exists. Subscriptions are unique by project + queue + subscriber URI."
    )

    def __init__(self, sid: str, confirmed: bool) -> None:
        super().__init__()
        self.sid, self.confirmed = sid, confirmed


class PoolUriInUse(Conflict):
    template = "The database URI is in use by another pool."

    def __init__(self, uri: str) -> None:
        super().__init__(uri=uri)


class BackendUnavailable(StorageError):
    template = "The storage backend is unavailable: {reason}"

    def __init__(self, reason: str) -> None:
        super().__init__(reason=reason)
