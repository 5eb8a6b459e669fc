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


def test_expiry_is_checked_against_the_clock():
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


@pytest.mark.parametrize("expires", [
    "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00+01:00",
    "10000-01-01T00:00:00", "2023-02-30T00:00:00", "2023-11-15T24:00:00", "２０２３-11-15T00:00:00",
])
def test_expiries_no_datetime_holds_fail_instead_of_raising(expires):
    """Review 8 #3: astimezone overflowed (OverflowError), a 500 over HTTP and a dropped websocket."""
    assert not signed_url.verify(KEY, _grant(expires=expires), "GET", PATH, NOW)


@pytest.mark.parametrize("spelling", [
    "2023-11-15T00:00:00Z", "2023-11-15T00:00:00+00:00", "2023-11-15 00:00:00", "2023-11-15T00:00:00.000",
    "2023-11-15T00:00:00.999999", "2023-11-15T02:00:00+02:00", " 2023-11-15T00:00:00", "2023-11-15T00:00",
])
def test_only_the_signed_spelling_of_the_expiry_verifies(spelling):
    """Another spelling of the same instant is not what was signed (review 8 nit: URL-Expires malleable)."""
    assert signed_url.verify(KEY, _grant(), "GET", PATH, NOW)
    assert not signed_url.verify(KEY, _grant(expires=spelling), "GET", PATH, NOW)


@pytest.mark.parametrize("changed", [
    {"project": "\ud800"}, {"paths": [PATH, "\ud800"]}, {"methods": ["GET", "\udfff"]},
    {"signature": "\ud800" * 64},
])
def test_text_utf_8_cannot_encode_fails_instead_of_raising(changed):
    """A websocket envelope can carry unpaired surrogates (JSON "\\ud800")."""
    assert not signed_url.verify(KEY, _grant(**changed), "GET", PATH, NOW)


@pytest.mark.parametrize(("value", "text"), [
    ("9999-12-31T23:59:59-01:00", "Unable to parse date string '9999-12-31T23:59:59-01:00'"),
    ("0001-01-01T00:00:00+01:00", "`expires` is lower than the current time"),
    ("2023-11-14T23:00:00+01:00", "`expires` is lower than the current time"),
])
def test_share_expiries_beyond_the_calendar_get_the_contracts_texts(value, text):
    with pytest.raises(ValueError) as refused:
        signed_url.expiry(value, NOW)
    assert str(refused.value) == text


def test_share_normalises_any_offset_to_the_signed_utc_spelling():
    expires = signed_url.expiry("2023-11-15T02:00:00+02:00", NOW)
    made = signed_url.create(KEY, [PATH], ["GET"], "demo", expires)
    assert made["expires"] == "2023-11-15T00:00:00"
    grant = signed_url.Grant(made["signature"], made["expires"], made["methods"], made["paths"], "demo")
    assert signed_url.verify(KEY, grant, "GET", PATH, NOW)
