"""Errors the API layer reports to clients, and the one storage-error mapping.

    ApiError                      status, title, description, summary
    ├── BadRequest           400  "Invalid API request"
    │   ├── InvalidBody      400  "Invalid request body"
    │   └── InvalidQueue     400  "Invalid queue identification"
    ├── UnableToDelete       400/403 "Unable to delete" (403: a pool a flavor still uses)
    ├── Forbidden            403  "Not authorized"
    ├── NotFound             404  "Not found"
    ├── Conflict             409  "Resource conflict"
    ├── InternalError        500  "Internal server error"
    └── Unavailable          503  "Service temporarily unavailable" (also: pooling on, no pool)

Both transports render the same error: HTTP as ``{"title", "description"}``,
websocket as ``{"exception": detail, "error": summary}``. ``detail`` defaults
to the description; it differs only where the contract gives the websocket a
more specific text (queue-name checks, limits-and-errors.md §6).
"""

from __future__ import annotations

from typing import Any, ClassVar

from zaqar.storage import errors as storage_errors


class ApiError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        description: str | None = None,
        *,
        title: str | None = None,
        status: int | None = None,
        summary: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description or title or self.title)
        self.description = description
        if title is not None:
            self.title = title  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.summary = summary
        self.detail = detail if detail is not None else description
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"title": self.title}
        if self.description is not None:
            body["description"] = self.description
        return body


class BadRequest(ApiError):
    status = 400
    title = "Invalid API request"


class InvalidBody(BadRequest):
    title = "Invalid request body"


class InvalidQueue(BadRequest):
    title = "Invalid queue identification"

    def __init__(self, detail: str) -> None:
        super().__init__(
            "The format of the submitted queue name or project id is not valid.", detail=detail
        )


class UnableToDelete(ApiError):
    status = 400
    title = "Unable to delete"


class Forbidden(ApiError):
    status = 403
    title = "Not authorized"

    def __init__(self, description: str = "You are not authorized to complete this action.") -> None:
        super().__init__(description)


class NotFound(ApiError):
    status = 404
    title = "Not found"


class Conflict(ApiError):
    status = 409
    title = "Resource conflict"


class InternalError(ApiError):
    status = 500
    title = "Internal server error"


class Unavailable(ApiError):
    status = 503
    title = "Service temporarily unavailable"

    def __init__(self, what: str, *, summary: str | None = None) -> None:
        super().__init__(f"{what} Please try again in a few seconds.", summary=summary or what)


_CLAIMED = "This message is claimed; it cannot be deleted without a valid claim ID."
_CLAIM_GONE = "The specified claim does not exist or has expired."
_NOT_CLAIMED = "A claim was specified, but the message is not currently claimed."


def _no_pool(exc: storage_errors.StorageError) -> ApiError:
    """Pooling is on but no pool can take the queue: an operator has to act, a retry will not help."""
    flavor = exc.context.get("flavor")
    hint = f"add a pool to flavor {flavor}" if flavor else "register a pool"
    text = f"{exc}, so the queue cannot be placed; an operator must {hint} first."
    return ApiError(text, title=Unavailable.title, status=503, summary=text)


def from_storage(exc: storage_errors.StorageError, unavailable: str) -> ApiError:
    """Translate a storage error; ``unavailable`` is the operation's 503 text.

    The most specific class wins, searched along the exception's MRO, so a
    new storage error subclass inherits its parent's mapping.
    """
    for cls in type(exc).__mro__:
        factory = _FROM_STORAGE.get(cls)
        if factory is not None:
            return factory(exc, unavailable)
    return Unavailable(unavailable)


_FROM_STORAGE: dict[type, Any] = {
    storage_errors.DoesNotExist: lambda e, _: NotFound(str(e), summary=str(e)),
    # websocket.md 6.4: pool and flavor errors carry no summary ("error": null)
    storage_errors.PoolDoesNotExist: lambda e, _: NotFound(str(e)),
    storage_errors.FlavorDoesNotExist: lambda e, _: NotFound(str(e)),
    storage_errors.PoolInUseByFlavor: lambda e, _: UnableToDelete(str(e), status=403),
    storage_errors.MessageIsClaimed: lambda e, _: UnableToDelete(_CLAIMED, status=403, summary=_CLAIMED),
    storage_errors.ClaimNotLive: lambda e, _: UnableToDelete(_CLAIM_GONE, summary=_CLAIM_GONE),
    storage_errors.MessageNotClaimed: lambda e, _: UnableToDelete(_NOT_CLAIMED, summary=_NOT_CLAIMED),
    storage_errors.Conflict: lambda e, _: Conflict(str(e)),
    storage_errors.MessageConflict: lambda e, _: Unavailable("No messages could be enqueued."),
    storage_errors.BackendUnavailable: lambda e, what: Unavailable(what),
    storage_errors.NoPoolFound: lambda e, _: _no_pool(e),
}
