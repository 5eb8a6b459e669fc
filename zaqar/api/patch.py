"""The JSON-patch subset queue PATCH accepts (http-v2.md §3.5).

Parsing is separate from applying: the whole document is checked before
the queue is read, so a bad document never half-applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from zaqar.api import errors

OPS = ("add", "remove", "replace")
_OPS_TEXT = "add, remove, replace"


@dataclasses.dataclass(frozen=True, slots=True)
class PatchOp:
    op: str
    key: str
    value: Any = None


def _bad(text: str) -> errors.InvalidBody:
    return errors.InvalidBody(text)


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _bad(f"Pointer `{path}` does not start with \"/\".")
    if not path.startswith("/"):
        raise _bad(f'Pointer `{path}` does not start with "/".')
    if path.endswith("/") or "//" in path:
        raise _bad(f"Pointer `{path}` contains adjacent \"/\".")
    parts = path[1:].split("/")
    for part in parts:
        stripped = part.replace("~0", "").replace("~1", "")
        if "~" in stripped:
            raise _bad(f'Pointer `{path}` contains "~" not part of a recognized escape sequence.')
    return [p.replace("~1", "/").replace("~0", "~") for p in parts]


def parse(document: Any) -> list[PatchOp]:
    if not isinstance(document, list):
        raise _bad("Document type not supported.")
    ops = []
    for change in document:
        if not isinstance(change, dict):
            raise _bad("Operations must be JSON objects.")
        op = change.get("op")
        if op is None:
            raise _bad(
                f"Unable to find `op` in JSON Schema change. It must be one of the following: {_OPS_TEXT}."
            )
        if op not in OPS:
            raise _bad(f"Invalid operation: `{op}`. It must be one of the following: {_OPS_TEXT}.")
        if "path" not in change:
            raise _bad("Unable to find 'path' in JSON Schema change")
        parts = _pointer(change["path"])
        if len(parts) != 2:
            raise _bad(f"Invalid JSON pointer for this resource: '/{'/'.join(parts)}, e.g /metadata/key'")
        if op != "remove" and parts[0].lower() != "metadata":
            raise _bad("The root of path must be metadata, e.g /metadata/key.")
        if op != "remove" and "value" not in change:
            raise _bad(f'Operation "{op}" requires a member named "value".')
        ops.append(PatchOp(op, parts[1].strip(), change.get("value")))
    return ops


def apply(ops: list[PatchOp], meta: Mapping[str, Any], reserved: tuple[str, ...]) -> dict[str, Any]:
    result = dict(meta)
    for change in ops:
        present = change.key in result
        if change.op == "add" or (change.op == "replace" and (present or change.key in reserved)):
            result[change.key] = change.value
        elif change.op == "replace":
            raise errors.Conflict(f"Can't replace non-existent object {change.key}.")
        elif present:
            del result[change.key]
        elif change.key not in reserved:
            raise errors.Conflict(f"Can't remove non-existent object {change.key}.")
    return result
