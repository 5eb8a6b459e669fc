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


def test_a_sqlite_server_loads_no_optional_driver_library(tmp_path):
    """Redis and SQL client libraries are extras: building the default server must not import them."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from zaqar import bootstrap, storage\n"
        "from zaqar.cmd import server\n"
        f"storage.load_data_driver('sqlite', 'sqlite:///{tmp_path}/z.sqlite').close()\n"
        "print(sorted(m for m in ('redis', 'sqlalchemy', 'psycopg', 'pymysql') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
