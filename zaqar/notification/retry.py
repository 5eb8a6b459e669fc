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


def schedule(policy: Mapping[str, Any] | None) -> list[float]:
    p = {**DEFAULTS, **(policy or {})}
    low, high = float(p["minimum_delay"]), float(p["maximum_delay"])
    return ([0.0] * int(p["retries_with_no_delay"]) + [low] * int(p["minimum_delay_retries"])
            + _backoff(max(low, 1.0), high, str(p["retry_backoff_function"]))
            + [high] * int(p["maximum_delay_retries"]))


def effective(subscription_options: Mapping[str, Any], queue_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The policy that applies: the queue's when it says to ignore overrides, else the subscription's."""
    queue_policy = queue_metadata.get("_retry_policy") or {}
    own = subscription_options.get("_retry_policy") or {}
    if queue_policy.get("ignore_subscription_override"):
        return dict(queue_policy)
    return {**queue_policy, **own}
