"""Fixtures shared by every layer's tests."""

from __future__ import annotations

import pytest


class FakeClock:
    """A clock tests move by hand, so TTL and claim expiry never need sleeps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
