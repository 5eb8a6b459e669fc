"""The WSGI entry point that uwsgi and gunicorn load (README, "Serving HTTP in production").

Each scenario runs in a fresh interpreter, as a WSGI server's worker does:
the module reads its configuration when imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PREAMBLE = """
import json, os, threading, falcon.testing
from zaqar.transport.wsgi.application import application
client = falcon.testing.TestClient(application)
headers = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "wsgi"}
"""

SERVES = PREAMBLE + """
built_at_import = os.path.exists(os.environ["STORE_FILE"])
posted = client.simulate_post("/v2/queues/q/messages", headers=headers, json={"messages": [{"body": 7}]})
listed = client.simulate_get("/v2/queues/q/messages", headers=headers, params={"echo": "true"})
print(json.dumps([built_at_import, posted.status_code, [m["body"] for m in listed.json["messages"]]]))
"""

# The parent serves (and so builds), then forks: the child must build its own app, with its own
# sweeper thread, and serve from it; what the parent built goes on serving the parent.
FORKS = PREAMBLE + """
assert client.simulate_post("/v2/queues/q/messages", headers=headers,
                            json={"messages": [{"body": "parent"}]}).status_code == 201
parent_app = application._app
reader, writer = os.pipe()
pid = os.fork()
if pid == 0:
    sweepers_inherited = [t for t in threading.enumerate() if t.name == "zaqar-gc" and t.is_alive()]
    posted = client.simulate_post("/v2/queues/q/messages", headers=headers,
                                  json={"messages": [{"body": "child"}]})
    sweepers = [t for t in threading.enumerate() if t.name == "zaqar-gc" and t.is_alive()]
    report = [len(sweepers_inherited), posted.status_code, application._app is not parent_app, len(sweepers)]
    os.write(writer, json.dumps(report).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(reader, 4096))
listed = client.simulate_get("/v2/queues/q/messages", headers=headers, params={"echo": "true"})
print(json.dumps([child, application._app is parent_app, [m["body"] for m in listed.json["messages"]]]))
"""

UNOPENABLE = PREAMBLE + """
answers = [client.simulate_get("/v2/queues", headers=headers) for _ in range(2)]
print(json.dumps([[a.status_code, a.json, a.headers.get("retry-after")] for a in answers]))
"""


def _run(script: str, config: Path, **env: str) -> list:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ZAQAR_CONFIG_FILE": str(config), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _config(tmp_path: Path, state_path: Path) -> Path:
    config = tmp_path / "zaqar.conf"
    config.write_text(f"[DEFAULT]\nstate_path = {state_path}\n")
    return config


def test_the_module_serves_the_configured_store_from_its_first_request(tmp_path):
    store_file = tmp_path / "zaqar.sqlite"
    built_at_import, status, bodies = _run(SERVES, _config(tmp_path, tmp_path), STORE_FILE=str(store_file))
    assert not built_at_import  # importing opens nothing a forking server could carry into workers
    assert (status, bodies) == (201, [7])
    assert store_file.exists()  # the configured state_path, not the default one


def test_a_worker_forked_after_serving_builds_its_own_app_and_threads(tmp_path):
    child, parent_kept, bodies = _run(FORKS, _config(tmp_path, tmp_path))
    inherited_sweepers, child_status, child_built_anew, child_sweepers = child
    assert inherited_sweepers == 0  # threads do not survive a fork...
    # ...so the child starts its own
    assert (child_status, child_built_anew, child_sweepers) == (201, True, 1)
    assert parent_kept
    assert bodies == ["parent", "child"]  # one store, written by both processes


def test_a_store_that_cannot_be_opened_answers_503_with_a_reason_each_time(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    answers = _run(UNOPENABLE, _config(tmp_path, blocker / "state"))
    for status, body, retry_after in answers:
        assert status == 503 and retry_after == "5"
        assert body["title"] == "Service Unavailable"
        assert body["description"].startswith("The server cannot reach its store: ")
