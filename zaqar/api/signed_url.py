"""Pre-signed URLs: creating them (``share``) and checking requests that carry one (http-v2.md §8).

Both transports verify through ``verify`` and the share operation signs through
``create``; the HMAC itself is the one the confirmation notifications already
use (``zaqar.notification.confirmation.signature``), so a URL signed by either
verifies with the other.
"""

from __future__ import annotations

import dataclasses
import datetime
import hmac
import re
from collections.abc import Sequence
from typing import Any

from zaqar.notification.confirmation import signature

__all__ = ["DATE_FORMAT", "Grant", "create", "expiry", "path_allowed", "verify"]

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
DEFAULT_LIFETIME = datetime.timedelta(days=1)
# The one spelling ``share`` hands out and signs (§8.2): ``DATE_FORMAT``, four-digit year, UTC.
_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_UNPARSABLE = "Unable to parse date string {!r}"
_PAST = "`expires` is lower than the current time"


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """What a request presents: the values ``share`` returned, as the request carries them."""

    signature: Any
    expires: Any
    methods: Any
    paths: Any
    project: str | None


def _utc(moment: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).replace(tzinfo=None)


def _to_utc(moment: datetime.datetime, value: str) -> datetime.datetime:
    """``moment`` as naive UTC; ValueError when that lies outside the years 1 to 9999."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(datetime.UTC).replace(tzinfo=None)
    except OverflowError:
        # NOTE: e.g. 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC; 0001-01-01T00:00:00+01:00
        # is before year 1, and so in the past whatever the clock says.
        raise ValueError(_PAST if moment.year == 1 else _UNPARSABLE.format(value)) from None


def expiry(value: Any, now: float) -> datetime.datetime:
    """The naive UTC moment ``value`` names; raises ValueError with the contract's text (§8.1).

    ``None`` means a day from ``now``. Any ISO 8601 date-time is accepted and
    normalised to UTC; a value that reads as an integer is refused, as upstream
    refuses it (a lifetime in seconds is a common client mistake that would
    otherwise parse as a date).
    """
    if value is None:
        return _utc(now) + DEFAULT_LIFETIME
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(_UNPARSABLE.format(value))
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number:
        raise ValueError("`expires` should be date format, for example 2016-01-01T00:00:00, "
                         f"not integer value: {number}")
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(_UNPARSABLE.format(value)) from None
    moment = _to_utc(moment, value)
    if moment <= _utc(now):
        raise ValueError(_PAST)
    return moment


def create(key: str, paths: Sequence[str], methods: Sequence[str], project: str | None,
           expires: datetime.datetime) -> dict[str, Any]:
    """The ``share`` reply: sorted paths and methods, the expiry as signed, and the signature."""
    stamp = expires.strftime(DATE_FORMAT)
    return {
        "paths": sorted(paths),
        "methods": sorted(methods),
        "project": project,
        "expires": stamp,
        "signature": signature(key, paths, methods, project, stamp),
    }


def path_allowed(granted: str, path: str) -> bool:
    """Whether a granted path covers ``path``: the same path, or one below it.

    NOTE: upstream runs ``re.search(granted, path)``. For every path ``share``
    can grant that is the same answer, except that a dot in a queue name (valid
    in names, a wildcard in a regex) would let a URL for queue ``a.b`` open
    ``a-b``; a path match has no such hole.
    """
    if not granted:
        return False
    return path == granted or path.startswith(granted.rstrip("/") + "/")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _unexpired(stamp: str, now: float) -> bool:
    """Whether ``stamp``, spelled exactly as ``share`` spells expiries, names a moment after ``now``."""
    if not _STAMP.fullmatch(stamp):
        return False
    try:
        return datetime.datetime.strptime(stamp, DATE_FORMAT) > _utc(now)
    except ValueError:  # e.g. 2023-02-30T00:00:00
        return False


def verify(key: str | None, grant: Grant, method: str, path: str, now: float) -> bool:
    """Whether ``grant`` lets ``method`` on ``path`` through at ``now`` (epoch seconds).

    Checked in the contract's order (§8.3): method, path, then the signature
    over the grant's own values with an expiry still in the future. Any value
    of the wrong type simply fails; nothing a request carries makes this raise.

    The signature is checked over the expiry exactly as the request spells it,
    which must be the one spelling ``share`` hands out (``DATE_FORMAT``, UTC).
    NOTE: upstream parses it and signs the normalised value, so ``...Z``,
    ``...+00:00`` or ``... 00:00:00.999`` verified with the signature of
    ``...T00:00:00`` too (the last one for up to a second longer). No client
    needs another spelling: each one sends back the ``expires`` it was given.
    """
    if key is None or not isinstance(grant.signature, str) or not isinstance(grant.expires, str):
        return False
    if not _strings(grant.methods) or not _strings(grant.paths) or method not in grant.methods:
        return False
    if not any(path_allowed(granted, path) for granted in grant.paths):
        return False
    if not _unexpired(grant.expires, now):
        return False
    try:
        expected = signature(key, grant.paths, grant.methods, grant.project, grant.expires)
        return hmac.compare_digest(expected.encode(), grant.signature.encode())  # any text, constant time
    except (TypeError, ValueError):  # e.g. an unpaired surrogate (JSON "\ud800"), which UTF-8 cannot encode
        return False
