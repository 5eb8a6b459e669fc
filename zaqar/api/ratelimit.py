"""A request rate limit per project: one token bucket each, shared by every transport.

Applied in ``Api.handle``, so HTTP and websocket requests of a project draw
from the same bucket. A bucket holds up to ``burst`` tokens and gains
``rate`` tokens a second; each request takes one, and a request finding
less than one is refused with 429 and told when a token will be there.

Memory stays bounded however many project ids clients invent: a bucket
left alone long enough to refill is the same as no bucket, so those are
dropped first, and beyond ``max_projects`` the least recently used one goes
(which can only hand that project a fresh burst early).

Without authentication the project is whatever the client says, so this
limit guards against a runaway client of a project, not against a hostile
one (which would name other projects); the connection limits per address
are for that.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from zaqar.api.errors import ApiError


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """``rate`` requests per second per project, bursts of up to ``burst``; rate 0: no limit."""

    rate: float = 0.0
    burst: int = 0  # 0: one second's worth of requests
    max_projects: int = 10000

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class TooManyRequests(ApiError):
    status = 429
    title = "Too many requests"

    def __init__(self, rate: float, burst: int, retry_after: int) -> None:
        seconds = "1 second" if retry_after == 1 else f"{retry_after} seconds"
        super().__init__(
            f"This project may send {rate:g} requests per second (bursts of {burst}). "
            f"Please try again in {seconds}.",
            summary="Rate limit exceeded.",
            headers={"Retry-After": str(retry_after)},
        )


class RateLimiter:
    """Token buckets by project id; thread-safe."""

    def __init__(self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        if not settings.enabled:
            raise ValueError("a rate limiter needs a rate above 0")
        self.rate = settings.rate
        self.burst = float(settings.burst or max(1, math.ceil(settings.rate)))
        self.max_projects = settings.max_projects
        self._clock = clock
        self._refill_time = self.burst / self.rate  # an idle bucket is full again after this
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # project -> [tokens, updated]
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, project: str) -> None:
        """Take a token for one request of ``project``; raises TooManyRequests when there is none."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(project)
            if bucket is None:
                if len(self._buckets) >= self.max_projects:
                    self._evict(now)
                bucket = self._buckets[project] = [self.burst, now]
            else:
                self._buckets.move_to_end(project)
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return
            wait = (1.0 - bucket[0]) / self.rate
        raise TooManyRequests(self.rate, int(self.burst), max(1, math.ceil(wait)))

    def _evict(self, now: float) -> None:
        """Make room for one bucket: drop the refilled ones, else the least recently used.

        Buckets are kept in order of last use, so the refilled ones are at the
        front and this costs only what it drops.
        """
        buckets = self._buckets
        while buckets:
            project, (_, updated) = next(iter(buckets.items()))
            if now - updated < self._refill_time:
                break
            del buckets[project]
        if len(buckets) >= self.max_projects:
            buckets.popitem(last=False)
