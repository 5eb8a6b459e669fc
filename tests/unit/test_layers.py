"""The layering the design depends on: calls only go down."""

from __future__ import annotations

import ast
from pathlib import Path

import zaqar

ROOT = Path(zaqar.__file__).parent


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


def test_api_layer_imports_no_transport_library():
    imported = _imports("api")
    assert not {m for m in imported if m.split(".")[0] in {"falcon", "ws4py", "cheroot", "oslo_config"}}
    assert not {m for m in imported if m.startswith("zaqar.transport")}


def test_storage_imports_nothing_from_api_or_transport():
    imported = _imports("storage")
    assert not {m for m in imported if m.startswith(("zaqar.api", "zaqar.transport", "falcon"))}


def test_public_api_is_pinned():
    import zaqar.api

    assert sorted(zaqar.api.__all__) == [
        "Api", "ApiError", "Context", "Features", "Limits", "Request", "Response",
    ]
