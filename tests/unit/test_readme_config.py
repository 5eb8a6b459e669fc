"""Every zaqar.conf example in README.md loads, with every value of the groups it sets parsed.

Operators copy these blocks; a value that does not parse (an inline '; comment'
read as part of a boolean, say) would stop the server at start.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zaqar import conf

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```ini\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_config_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_each_config_example_loads(tmp_path, block):
    path = tmp_path / "zaqar.conf"
    path.write_text(block)
    loaded = conf.load(["--config-file", str(path)])
    for group in re.findall(r"^\[([^\]]+)\]", block, re.M):
        if group == "DEFAULT":
            values = [getattr(loaded, opt.name) for opt in conf.GROUPS[None]]
        elif group in conf.GROUPS:
            values = [loaded[group][opt.dest] for opt in conf.GROUPS[group]]
        else:
            continue  # read by a library (keystonemiddleware's [keystone_authtoken])
        assert values is not None
