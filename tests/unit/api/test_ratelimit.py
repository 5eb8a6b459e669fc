"""The per-project request rate limit: token buckets, their memory bound, and how it is configured."""

from __future__ import annotations

import pytest

from tests.conftest import FakeClock
from zaqar import bootstrap, conf
from zaqar.api import Api, Context, Request
from zaqar.api.ratelimit import RateLimiter, RateLimitSettings, TooManyRequests


def _allowed(limiter: RateLimiter, project: str, times: int) -> int:
    done = 0
    for _ in range(times):
        try:
            limiter.check(project)
        except TooManyRequests:
            break
        done += 1
    return done


def test_a_burst_then_the_rate_and_retry_after_says_when():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(rate=2.0, burst=4), clock=clock)
    assert _allowed(limiter, "p", 10) == 4
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("p")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    clock.advance(0.5)  # one token at 2/s
    assert _allowed(limiter, "p", 10) == 1
    clock.advance(60)  # refills to the burst, not beyond
    assert _allowed(limiter, "p", 10) == 4


def test_retry_after_rounds_up_to_whole_seconds():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(rate=0.25, burst=1), clock=clock)
    limiter.check("p")
    clock.advance(1.0)
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("p")
    assert refused.value.headers["Retry-After"] == "3"  # 0.75 tokens missing at 0.25/s


@pytest.mark.parametrize(("rate", "wait"), [(2.0, "1 second"), (0.25, "4 seconds")])
def test_the_429_says_when_in_words(rate, wait):
    limiter = RateLimiter(RateLimitSettings(rate=rate, burst=1), clock=FakeClock())
    limiter.check("p")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("p")
    assert refused.value.to_dict() == {
        "title": "Too many requests",
        "description": f"This project may send {rate:g} requests per second (bursts of 1). "
                       f"Please try again in {wait}.",
    }


def test_projects_have_separate_buckets():
    limiter = RateLimiter(RateLimitSettings(rate=1.0, burst=2), clock=FakeClock())
    assert _allowed(limiter, "a", 5) == 2
    assert _allowed(limiter, "b", 5) == 2


def test_the_default_burst_is_one_seconds_worth():
    limiter = RateLimiter(RateLimitSettings(rate=2.5), clock=FakeClock())
    assert _allowed(limiter, "p", 10) == 3


def test_memory_is_bounded_however_many_projects_are_invented():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(rate=1.0, burst=2, max_projects=50), clock=clock)
    for number in range(5000):
        limiter.check(f"invented-{number}")
        clock.advance(0.001)
    assert len(limiter) <= 50


def test_refilled_buckets_go_first_so_a_throttled_project_stays_throttled():
    clock = FakeClock()
    limiter = RateLimiter(RateLimitSettings(rate=1.0, burst=2, max_projects=3), clock=clock)
    limiter.check("idle")
    clock.advance(5)  # "idle" is full again: forgetting it changes nothing
    assert _allowed(limiter, "hot", 5) == 2
    limiter.check("newcomer")
    limiter.check("another")  # at the bound: "idle" is dropped, not "hot"
    assert len(limiter) == 3
    with pytest.raises(TooManyRequests):
        limiter.check("hot")


def test_off_by_default_and_configured_in_its_own_group(tmp_path):
    assert bootstrap.rate_limiter(conf.load([], config_files=[])) is None
    path = tmp_path / "zaqar.conf"
    path.write_text("[rate_limit]\nproject_rate = 5\n")
    limiter = bootstrap.rate_limiter(conf.load([], config_files=[str(path)]))
    assert limiter is not None
    assert (limiter.rate, limiter.burst) == (5.0, 5.0)


def test_requests_without_a_project_are_not_limited(api):
    limiter = RateLimiter(RateLimitSettings(rate=1.0, burst=1), clock=FakeClock())
    limited = Api(Context(store=api.ctx.store, rate_limiter=limiter))
    assert [limited.handle(Request("ping_node")).status for _ in range(3)] == [204] * 3
    queue_list = Request("queue_list", project_id="p")
    assert [limited.handle(queue_list).status for _ in range(2)] == [200, 429]


def test_a_throttled_project_still_loses_the_subscriptions_of_its_closed_connections(api):
    from zaqar.transport.websocket import protocol

    limiter = RateLimiter(RateLimitSettings(rate=1.0, burst=1), clock=FakeClock())
    limited = Api(Context(store=api.ctx.store, rate_limiter=limiter))
    session = protocol.Session(subscriber="http://127.0.0.1:1/connection")
    created = limited.handle(Request("subscription_create", project_id="p", client_id="c" * 10,
                                     params={"queue_name": "q", "ttl": 300}, connection=session.subscriber))
    assert created.status == 201
    session.bound.add(("p", "q", created.data[0]))
    assert limited.handle(Request("queue_list", project_id="p")).status == 429  # over its rate now
    protocol.forget(limited, session)
    assert api.ctx.store.subscriptions.live("p", "q") == []
