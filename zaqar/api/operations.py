"""The operation table: action name → handler, and what the API layer checks first.

Handlers register themselves with ``@operation``; ``zaqar.api.handlers``
imports every handler module so the table is complete once it is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from zaqar.api.request import Request, Response

if TYPE_CHECKING:
    from zaqar.api.context import Context

Handler = Callable[["Context", Request], Response]


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """One API operation.

    ``unavailable`` is the 503 text when its storage fails; ``queue`` says
    whether ``params["queue_name"]`` names a queue to validate; ``policy`` is
    the upstream policy rule guarding it; ``feature`` a switch in
    ``Features`` without which the operation does not exist on this server.
    """

    name: str
    func: Handler
    unavailable: str
    queue: bool = True
    policy: str | None = None
    feature: str | None = None


OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str,
    *,
    unavailable: str,
    queue: bool = True,
    policy: str | None = None,
    feature: str | None = None,
) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        if name in OPERATIONS:
            raise RuntimeError(f"operation {name} registered twice")
        OPERATIONS[name] = Operation(name, func, unavailable, queue, policy, feature)
        return func

    return register
