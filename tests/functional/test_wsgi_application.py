"""The WSGI entry point that uwsgi and gunicorn load (README, "Serving HTTP in production")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, falcon.testing
from zaqar.transport.wsgi.application import application
client = falcon.testing.TestClient(application)
headers = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "wsgi"}
posted = client.simulate_post("/v2/queues/q/messages", headers=headers, json={"messages": [{"body": 7}]})
listed = client.simulate_get("/v2/queues/q/messages", headers=headers, params={"echo": "true"})
print(json.dumps([posted.status_code, [m["body"] for m in listed.json["messages"]]]))
"""


def test_the_module_serves_the_configured_store(tmp_path):
    config = tmp_path / "zaqar.conf"
    config.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n")
    env = {**os.environ, "ZAQAR_CONFIG_FILE": str(config)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [201, [7]]
    assert (tmp_path / "zaqar.sqlite").exists()  # the configured state_path, not the default one
