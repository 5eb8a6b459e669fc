"""Reserved queue metadata: defaults reported by GET and validation on PUT/PATCH."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zaqar.api import errors, validation
from zaqar.api.settings import Limits
from zaqar.storage.base import DeadLetter

# GET fills these in and PATCH may remove them silently: the two sets must
# stay identical (python-zaqarclient removes every key GET returned).
RESERVED = (
    "_max_messages_post_size",
    "_default_message_ttl",
    "_default_message_delay",
    "_dead_letter_queue",
    "_dead_letter_queue_messages_ttl",
    "_max_claim_count",
    "_enable_encrypt_messages",
)


def with_defaults(meta: Mapping[str, Any], limits: Limits) -> dict[str, Any]:
    """Stored metadata plus each reserved key whose value is missing or falsy."""
    defaults = {
        "_max_messages_post_size": limits.max_messages_post_size,
        "_default_message_ttl": limits.default_message_ttl,
        "_default_message_delay": limits.default_message_delay,
        "_dead_letter_queue": None,
        "_dead_letter_queue_messages_ttl": None,
        "_max_claim_count": None,
        "_enable_encrypt_messages": False,
    }
    full = dict(meta)
    for key, value in defaults.items():
        if not full.get(key):
            full[key] = value
    return full


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(meta: Mapping[str, Any], key: str, low: int, high: int, range_text: str, cls: type) -> None:
    value = meta.get(key)
    if value and not _is_int(value):
        raise cls(f"{key} must be integer.")
    if value is not None and _is_int(value) and not low <= value <= high:
        raise cls(range_text)


def validate(meta: Mapping[str, Any], limits: Limits, cls: type[errors.ApiError]) -> None:
    """Validate the reserved keys; ``cls`` picks the title (PUT and PATCH differ)."""
    ttl_max = limits.max_message_ttl
    _check_int(
        meta, "_default_message_ttl", 60, ttl_max,
        f"_default_message_ttl can not exceed {ttl_max} seconds, and must be at least 60 seconds long.",
        cls,
    )
    size_max = limits.max_messages_post_size
    _check_int(
        meta, "_max_messages_post_size", 1, size_max,
        f"_max_messages_post_size can not exceed {size_max},  and must be at least greater than 0.",
        cls,
    )
    value = meta.get("_max_claim_count")
    if value and not _is_int(value):
        raise cls("_max_claim_count must be integer.")
    _check_int(
        meta, "_dead_letter_queue_messages_ttl", 60, ttl_max,
        f"The TTL for a message may not exceed {ttl_max} seconds, and must be at least 60 seconds long.",
        cls,
    )
    delay_max = limits.max_message_delay
    _check_int(
        meta, "_default_message_delay", 0, delay_max,
        f"The TTL can not exceed {delay_max} seconds, and must be at least 0 seconds long.",
        cls,
    )
    encrypt = meta.get("_enable_encrypt_messages")
    if encrypt and not isinstance(encrypt, bool):
        raise cls("_enable_encrypt_messages must be boolean.")
    target = meta.get("_dead_letter_queue")
    if isinstance(target, str) and not validation.storable(target):
        # NOTE: otherwise "not validated" (http-v2.md); but such a name is one no store can hold,
        # and PostgreSQL refused every claim of the queue once a message was due to move there.
        raise cls("_dead_letter_queue may not contain NUL characters or unpaired surrogates.")


def dead_letter(meta: Mapping[str, Any]) -> DeadLetter | None:
    """The queue's dead-letter policy, active only when both keys are set."""
    target, count = meta.get("_dead_letter_queue"), meta.get("_max_claim_count")
    if not isinstance(target, str) or not target or not _is_int(count) or not validation.storable(target):
        return None  # NOTE: the last: metadata stored before names were checked
    ttl = meta.get("_dead_letter_queue_messages_ttl")
    return DeadLetter(target, count, ttl if _is_int(ttl) else None)
