"""Webhook retry schedules from a ``_retry_policy`` (http-v2.md §6.7).

A schedule is the list of waits before each retry: immediate retries, then
retries at the minimum delay, a back-off series from the minimum to the
maximum delay, then retries at the maximum delay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEFAULTS = {
    "retries_with_no_delay": 3,
    "minimum_delay_retries": 3,
    "minimum_delay": 5,
    "maximum_delay": 30,
    "maximum_delay_retries": 3,
    "retry_backoff_function": "linear",
}
STEP = 5  # seconds between back-off steps, upstream's constant
# The contract bounds none of these. Schedules are built per delivery and every pending delivery
# holds its body, so what a policy may ask is capped here (review: maximum_delay = 2**62 made the
# dispatcher build a list until the process ran out of memory, for every project).
MAX_DELAY = 3600.0  # seconds
MAX_RETRIES = 100  # per kind of retry
_COUNTS = ("retries_with_no_delay", "minimum_delay_retries", "maximum_delay_retries")


def _backoff(low: float, high: float, function: str) -> list[float]:
    waits: list[float] = []
    wait, step = float(low), float(STEP)
    while True:
        if function == "arithmetic":
            wait, step = wait + step, step + STEP
        elif function == "geometric":
            wait *= 2
        elif function == "exponential":
            wait *= math.e
        else:
            wait += STEP
        if wait >= high:
            return waits
        waits.append(wait)


def _number(value: Any, default: float, high: float) -> float:
    """``value`` as a number in [0, high]; ``default`` for anything else (types, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return min(max(float(value), 0.0), high)


def schedule(policy: Mapping[str, Any] | None) -> list[float]:
    """The waits before each retry; values out of range are clamped and odd ones read as defaults."""
    p = {**DEFAULTS, **(policy if isinstance(policy, Mapping) else {})}
    counts = {key: int(_number(p[key], DEFAULTS[key], MAX_RETRIES)) for key in _COUNTS}
    low = _number(p["minimum_delay"], DEFAULTS["minimum_delay"], MAX_DELAY)
    high = max(low, _number(p["maximum_delay"], DEFAULTS["maximum_delay"], MAX_DELAY))
    function = p["retry_backoff_function"] if isinstance(p["retry_backoff_function"], str) else "linear"
    return ([0.0] * counts["retries_with_no_delay"] + [low] * counts["minimum_delay_retries"]
            + _backoff(max(low, 1.0), high, function) + [high] * counts["maximum_delay_retries"])


def effective(subscription_options: Mapping[str, Any], queue_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The policy that applies: the queue's when it says to ignore overrides, else the subscription's."""
    queue_policy = queue_metadata.get("_retry_policy") or {}
    own = subscription_options.get("_retry_policy") or {}
    # NOTE: the queue's is not validated (http-v2.md): a policy that is not an object is none
    queue_policy = queue_policy if isinstance(queue_policy, Mapping) else {}
    own = own if isinstance(own, Mapping) else {}
    if queue_policy.get("ignore_subscription_override"):
        return dict(queue_policy)
    return {**queue_policy, **own}
