"""The browser client's unit tests (``tests/js/*.test.mjs``) run by Node's test runner, from pytest.

So README's single test command covers them. Without Node they are skipped,
except under CI (``CI=true``), where a missing Node fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def test_browser_client_unit_tests_pass_in_node() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed: CI must run the browser client's unit tests")
        pytest.skip("node is not installed")
    files = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    assert files, "no JavaScript tests found"
    result = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=300,
                            cwd=HERE.parent.parent)
    summary = [line for line in result.stdout.splitlines() if line.startswith("# ")]
    assert result.returncode == 0, f"node --test failed\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert any(line.startswith("# pass ") and line != "# pass 0" for line in summary), result.stdout
