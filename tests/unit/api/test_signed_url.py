"""Grant verification (http-v2.md §8.2, §8.3): the rules both transports apply through ``verify``."""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest

from zaqar.api import signed_url

KEY = "unit-key"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
PATH = "/v2/queues/q/messages"


def _grant(**changed) -> signed_url.Grant:
    expires = datetime.datetime(2023, 11, 15, 0, 0, 0)
    made = signed_url.create(KEY, [PATH], ["GET", "POST"], "demo", expires)
    fields = {"signature": made["signature"], "expires": made["expires"], "methods": made["methods"],
              "paths": made["paths"], "project": made["project"], **changed}
    return signed_url.Grant(**fields)


def test_upstream_signatures_verify():
    """A signature computed as upstream's tooling does (hex HMAC-SHA256, backslash-n separators)."""
    text = r"/v2/queues/q/messages\nGET,POST\ndemo\n2023-11-15T00:00:00"
    upstream = hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert signed_url.verify(KEY, _grant(signature=upstream), "GET", PATH, NOW)
    wrong = hmac.new(KEY.encode(), text.replace("\\n", "\n").encode(), hashlib.sha256).hexdigest()
    assert not signed_url.verify(KEY, _grant(signature=wrong), "GET", PATH, NOW)  # real newlines: no


def test_a_grant_opens_its_path_and_what_lies_below_it_only():
    grant = _grant()
    assert signed_url.verify(KEY, grant, "GET", PATH, NOW)
    assert signed_url.verify(KEY, grant, "POST", PATH + "/0123", NOW)
    for other in ("/v2/queues/q/messagesx", "/v2/queues/q", "/v2/queues/q/claims", "/v2/queues/qq/messages"):
        assert not signed_url.verify(KEY, grant, "GET", other, NOW), other


@pytest.mark.parametrize("changed", [
    {"methods": ["GET", "POST", "DELETE"]}, {"paths": [PATH, "/v2/queues/q/claims"]},
    {"project": "other"}, {"project": None}, {"expires": "2023-11-16T00:00:00"},
])
def test_any_changed_value_breaks_the_signature(changed):
    assert not signed_url.verify(KEY, _grant(**changed), "GET", PATH, NOW)


def test_expiry_is_checked_against_the_clock_and_may_carry_an_offset():
    assert signed_url.verify(KEY, _grant(expires="2023-11-15T02:00:00+02:00"), "GET", PATH, NOW)
    after = 1_700_006_400.0  # 2023-11-15T00:00:00Z, the grant's expiry
    assert signed_url.verify(KEY, _grant(), "GET", PATH, after - 1)
    assert not signed_url.verify(KEY, _grant(), "GET", PATH, after)


@pytest.mark.parametrize("changed", [
    {"signature": "é" * 64}, {"signature": None}, {"expires": None}, {"expires": "soon"},
    {"methods": "GET,POST"}, {"methods": [1]}, {"paths": None}, {"paths": [""]},
])
def test_malformed_grants_fail_instead_of_raising(changed):
    assert not signed_url.verify(KEY, _grant(**changed), "GET", PATH, NOW)


def test_without_a_key_nothing_verifies():
    assert not signed_url.verify(None, _grant(), "GET", PATH, NOW)
