"""Webhook retry schedules (http-v2.md §6.7, §6.8): exact waits, and which policy applies."""

from __future__ import annotations

import math

import pytest

from zaqar.notification import retry

IMMEDIATE_AND_MINIMUM = [0.0, 0.0, 0.0, 5.0, 5.0, 5.0]  # default: 3 immediate, 3 at minimum_delay (5 s)
AT_MAXIMUM = [30.0, 30.0, 30.0]  # default: 3 at maximum_delay (30 s)


def test_default_policy():
    expected = IMMEDIATE_AND_MINIMUM + [10.0, 15.0, 20.0, 25.0] + AT_MAXIMUM
    assert retry.schedule(None) == expected
    assert retry.schedule({}) == expected


@pytest.mark.parametrize("function, backoff", [
    ("linear", [10.0, 15.0, 20.0, 25.0]),  # +5 s each step
    ("arithmetic", [10.0, 20.0]),  # +5, +10, (+15 would pass the maximum)
    ("geometric", [10.0, 20.0]),  # x2
    ("exponential", [5 * math.e]),  # x e
])
def test_each_backoff_function_between_the_default_delays(function, backoff):
    expected = IMMEDIATE_AND_MINIMUM + backoff + AT_MAXIMUM
    assert retry.schedule({"retry_backoff_function": function}) == expected


@pytest.mark.parametrize("function, backoff", [
    ("linear", [15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0]),
    ("arithmetic", [15.0, 25.0, 40.0]),
    ("geometric", [20.0, 40.0]),
    ("exponential", [10 * math.e]),
])
def test_each_backoff_function_with_a_custom_policy(function, backoff):
    policy = {"retries_with_no_delay": 1, "minimum_delay_retries": 2, "minimum_delay": 10,
              "maximum_delay": 60, "maximum_delay_retries": 1, "retry_backoff_function": function}
    assert retry.schedule(policy) == [0.0, 10.0, 10.0] + backoff + [60.0]


def test_backoff_never_reaches_or_passes_the_maximum():
    # 30 is not below the maximum of 30: the series stops before it, the maximum-delay retries follow.
    assert retry.schedule({"minimum_delay": 20, "maximum_delay": 30, "retries_with_no_delay": 0,
                           "minimum_delay_retries": 0, "maximum_delay_retries": 1}) == [25.0, 30.0]


def test_a_zero_minimum_delay_still_backs_off_and_ends():
    # a series starting at 0 would never grow; it starts at 1 s instead
    policy = {"minimum_delay": 0, "maximum_delay": 30, "retry_backoff_function": "geometric"}
    assert retry.schedule(policy) == [0.0] * 6 + [2.0, 4.0, 8.0, 16.0] + AT_MAXIMUM


def test_partial_policy_keeps_the_other_defaults():
    assert retry.schedule({"retries_with_no_delay": 1}) == [0.0, 5.0, 5.0, 5.0, 10.0, 15.0, 20.0, 25.0,
                                                           *AT_MAXIMUM]


def test_no_retries_at_all():
    policy = {"retries_with_no_delay": 0, "minimum_delay_retries": 0, "maximum_delay_retries": 0,
              "minimum_delay": 100, "maximum_delay": 110, "retry_backoff_function": "geometric"}
    assert retry.schedule(policy) == []


def test_only_immediate_retries():
    """The policy the notifier tests use: two immediate retries, nothing delayed."""
    policy = {"retries_with_no_delay": 2, "minimum_delay_retries": 0, "maximum_delay_retries": 0,
              "minimum_delay": 100, "maximum_delay": 110, "retry_backoff_function": "geometric"}
    assert retry.schedule(policy) == [0.0, 0.0]


SUB = {"retries_with_no_delay": 1, "minimum_delay": 7}
QUEUE = {"retries_with_no_delay": 4, "maximum_delay": 60}


def test_effective_without_any_policy_is_empty_so_defaults_apply():
    assert retry.effective({}, {}) == {}
    assert retry.schedule(retry.effective({}, {})) == retry.schedule(None)


def test_effective_is_the_subscriptions_policy_alone():
    assert retry.effective({"_retry_policy": SUB}, {}) == SUB


def test_effective_is_the_queues_policy_when_the_subscription_has_none():
    assert retry.effective({"post_headers": {"a": "b"}}, {"_retry_policy": QUEUE}) == QUEUE


def test_subscription_keys_override_queue_keys_one_by_one():
    merged = retry.effective({"_retry_policy": SUB}, {"_retry_policy": QUEUE})
    assert merged == {"retries_with_no_delay": 1, "minimum_delay": 7, "maximum_delay": 60}


def test_queue_policy_wins_whole_when_it_ignores_overrides():
    queue = {**QUEUE, "ignore_subscription_override": True}
    assert retry.effective({"_retry_policy": SUB}, {"_retry_policy": queue}) == queue


def test_ignore_false_keeps_subscription_overrides():
    queue = {**QUEUE, "ignore_subscription_override": False}
    assert retry.effective({"_retry_policy": SUB}, {"_retry_policy": queue})["retries_with_no_delay"] == 1


def test_effective_does_not_change_its_inputs():
    options, meta = {"_retry_policy": dict(SUB)}, {"_retry_policy": dict(QUEUE)}
    retry.effective(options, meta)
    assert options == {"_retry_policy": SUB} and meta == {"_retry_policy": QUEUE}


# -- policies the contract does not bound (review: the dispatcher built them as lists) ----------------

@pytest.mark.parametrize("policy", [
    {"minimum_delay": 0, "maximum_delay": 2**62},
    {"maximum_delay": 1e300, "retries_with_no_delay": 10**9},
    {"maximum_delay": float("nan"), "minimum_delay": float("inf")},
])
def test_huge_policies_are_clamped_to_a_bounded_schedule(policy):
    waits = retry.schedule(policy)
    assert len(waits) <= 3 * retry.MAX_RETRIES + retry.MAX_DELAY / retry.STEP
    assert max(waits) <= retry.MAX_DELAY


@pytest.mark.parametrize("policy", ["x", ["minimum_delay"], {"retries_with_no_delay": "abc"},
                                    {"minimum_delay": True, "retry_backoff_function": 7}])
def test_odd_policies_read_as_the_defaults(policy):
    assert retry.schedule(policy) == retry.schedule(None)


def test_a_queue_policy_that_is_not_an_object_is_none():
    own = {"_retry_policy": {"minimum_delay": 9}}
    assert retry.effective(own, {"_retry_policy": "x"}) == {"minimum_delay": 9}
