"""Checks shared by every operation and transport, with the contract's exact texts.

Texts are wire contract (limits-and-errors.md), so they are written out here
once rather than composed at each call site.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import jsonschema
import jsonschema.exceptions

from zaqar.api import errors
from zaqar.api.settings import Limits

QUEUE_NAME = re.compile(r"^[a-zA-Z0-9_\-.]+$")
MAX_QUEUE_NAME = 64
MAX_PROJECT_ID = 256

# Text no store can hold, so that every store refuses it alike and before it is reached: NUL
# (PostgreSQL's text type refuses it; SQLite and Redis would keep it) and unpaired surrogates
# (no UTF-8 encoding exists; JSON can spell them, as "\ud800").
# PERF: one precompiled search per checked value: ~0.3 µs for a 32-character project id.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_TEXT = "may not contain NUL characters or unpaired surrogates"
# PERF: a \uD800-\uDFFF escape is rare (emoji written as escaped pairs); only then is a parsed
# JSON document checked for an unpaired one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def utf8_encodable(raw: bytes, document: Any) -> None:
    """Raise UnicodeEncodeError if JSON text ``raw`` (parsed: ``document``) spells an unpaired surrogate.

    JSON can spell one ("\\ud800"), which no UTF-8 text holds: stored, it would
    make every later answer that includes it fail to encode. Both transports'
    decoders call this and refuse the request as undecodable.
    """
    if _SURROGATE_ESCAPE.search(raw):
        json.dumps(document, ensure_ascii=False).encode("utf-8")


# Free-text parameters the stores compare as text. NOTE: ids are not among them: the contract makes
# an impossible id behave like an unknown one (http-v2.md §0.8, §4.8), and the stores check id syntax.
_COMPARED_AS_TEXT = frozenset({"marker", "name"})


def client_id(value: str | None, limits: Limits) -> str:
    """Validate a Client-ID as upstream does (strict UUID, or a length window)."""
    if value is None:
        raise errors.BadRequest('The "Client-Id" header is required.', title="Missing header value")
    if limits.client_id_uuid_safe == "strict":
        try:
            uuid.UUID(value)
        except ValueError:
            raise errors.BadRequest(
                "Malformed hexadecimal UUID.",
                title="Wrong UUID value",
                detail="badly formed hexadecimal UUID string",
            ) from None
    elif not limits.min_length_client_id <= len(value) <= limits.max_length_client_id:
        text = (
            f"Length of client id must be at least {limits.min_length_client_id} "
            f"and no greater than {limits.max_length_client_id}."
        )
        raise errors.BadRequest(title=text, detail=text)
    elif UNSTORABLE.search(value):  # stored with each message; a UUID never holds such characters
        raise errors.BadRequest(f'The "Client-ID" header {_UNSTORABLE_TEXT}.')
    return value


def project_id(value: str | None) -> str:
    """Validate the project a request acts for; every transport calls this before the Api.

    Raises:
        BadRequest: missing or empty (the contract's texts), or text no store can hold, which is
            refused as a malformed project id (``Invalid queue identification``, http-v2.md §0.3).
    """
    if value is None:
        raise errors.BadRequest("The header X-PROJECT-ID was missing", title="Project-Id Missing")
    if value == "":
        raise errors.BadRequest(
            "X-PROJECT-ID cannot be an empty string. Specify the right header X-PROJECT-ID and retry.",
            title="Empty project header not allowed",
        )
    if UNSTORABLE.search(value):
        raise errors.InvalidQueue(f"Project ids {_UNSTORABLE_TEXT}.")
    return value


def queue_identification(name: Any, project: str | None) -> str:
    """Validate a queue name together with its project, in upstream's order."""
    if project is not None and len(project) > MAX_PROJECT_ID:
        raise errors.InvalidQueue(f"Project ids may not be more than {MAX_PROJECT_ID} characters long.")
    if not isinstance(name, str):
        raise errors.InvalidQueue(
            "Queue names may only contain ASCII letters, digits, underscores, and dashes."
        )
    if len(name) > MAX_QUEUE_NAME:
        raise errors.InvalidQueue(f"Queue names may not be more than {MAX_QUEUE_NAME} characters long.")
    if not QUEUE_NAME.match(name):
        raise errors.InvalidQueue(
            "Queue names may only contain ASCII letters, digits, underscores, and dashes."
        )
    return name


def integer(params: Any, field: str, default: int | None = None) -> int | None:
    """A typed field: missing → default, present → must be a JSON integer."""
    if field not in params:
        return default
    value = params[field]
    # NOTE: JSON true/false count as ints (Python bool is an int) and then fail range checks [U].
    if not isinstance(value, int):
        raise errors.InvalidBody(f'The value of the "{field}" field must be a int.')
    return int(value)


def limit(value: int | None, default: int, maximum: int, *, text: str) -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise errors.BadRequest(text.format(max=maximum))
    return value


def boolean(params: Any, field: str, default: bool = False) -> bool:
    value = params.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise errors.BadRequest(
            f'The "{field}" parameter is invalid. The value of the parameter must be "true" or "false".',
            title="Invalid parameter",
        )
    return value


def string(params: Any, field: str) -> str | None:
    """An optional string parameter; markers and name filters must also be text the stores can hold."""
    value = params.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.BadRequest(f'The "{field}" parameter is invalid. The value must be a string.')
    if field in _COMPARED_AS_TEXT and UNSTORABLE.search(value):
        raise _unstorable(field)
    return value


def storable(value: str) -> bool:
    """Whether every store can hold ``value`` (see ``UNSTORABLE``)."""
    return UNSTORABLE.search(value) is None


def storable_strings(values: list[str], field: str) -> list[str]:
    """``values`` (strings), unless one holds text no store can hold: then 400."""
    if any(UNSTORABLE.search(value) for value in values):
        raise _unstorable(field)
    return values


def _unstorable(field: str) -> errors.BadRequest:
    return errors.BadRequest(f'The "{field}" parameter is invalid. The value {_UNSTORABLE_TEXT}.')


def required_string(params: Any, field: str) -> str:
    value = params.get(field)
    if not isinstance(value, str):
        raise errors.BadRequest(f'Missing "{field}" field.', title="Invalid request body")
    return value


def string_list(params: Any, field: str) -> list[str] | None:
    value = params.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.BadRequest(f'The "{field}" parameter must be a list of strings.')
    return value


def document(validator: jsonschema.Draft4Validator, value: Any) -> None:
    """Check a body against a JSON schema, as upstream does for pools and flavors.

    Raises:
        InvalidBody: ``<field>: <jsonschema message>`` (``body`` for the document itself), for the
            most relevant failure, so the client learns which field to fix; likewise for a key or
            string holding text no store can hold (``UNSTORABLE``).
    """
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "body"
        raise errors.InvalidBody(f"{where}: {error.message}")
    where = _unstorable_at(value, ())
    if where is not None:
        raise errors.InvalidBody(f"{'.'.join(where) or 'body'}: the value {_UNSTORABLE_TEXT}")


def _unstorable_at(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """Where in a JSON document the first text no store can hold is (a key or a string), or None."""
    if isinstance(value, str):
        return path if UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = (*path, str(key))
        if isinstance(key, str) and UNSTORABLE.search(key):
            return here
        found = _unstorable_at(item, here)
        if found is not None:
            return found
    return None


PAGE_LIMIT_NO_GREATER = "Limit must be at least 1 and no greater than {max}."
PAGE_LIMIT_MAY_NOT = "Limit must be at least 1 and may not be greater than {max}."
