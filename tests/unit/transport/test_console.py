"""The console page and the JavaScript client, served by the falcon app under ``[console] path``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import falcon.testing
import pytest

import zaqar
from tests.functional import auth_setup
from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.transport import wsgi
from zaqar.transport.wsgi import console

keystone = auth_setup.keystone  # fixture: a local Keystone

ROOT = Path(zaqar.__file__).parent.parent
STATIC_FILES = ["console/index.html", "console/console.js", "console/console.css", "client/zaqar.js",
                "client/ws.js", "client/http.js", "client/watch.js", "client/util.js"]


def _conf(tmp_path: Path, text: str = ""):
    path = tmp_path / "zaqar.conf"
    path.write_text(text)
    return zconf.load([], config_files=[str(path)])


def _client(api, settings: console.ConsoleSettings | None = None) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(wsgi.build_app(api, console=settings or console.ConsoleSettings()))


def test_page_and_assets_are_served_with_their_types(api):
    http = _client(api)
    page = http.simulate_get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert 'src="console.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert http.simulate_get("/console/console.js").headers["content-type"].startswith("text/javascript")
    assert http.simulate_get("/console/console.css").headers["content-type"].startswith("text/css")
    client = http.simulate_get("/console/client/zaqar.js")
    assert client.status_code == 200
    assert "export class ZaqarClient" in client.text
    assert http.simulate_get("/console").headers["location"] == "/console/"


def test_unchanged_assets_revalidate_with_304(api):
    http = _client(api)
    first = http.simulate_get("/console/client/ws.js")
    again = http.simulate_get("/console/client/ws.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/..%2F..%2Fbootstrap.py", "/console/client/..",
                                  "/console/.hidden", "/console/client/%2e%2e%2fconsole%2findex.html"])
def test_only_files_of_the_static_folders_are_served(api, path):
    assert _client(api).simulate_get(path).status_code == 404


def test_the_redirect_to_the_page_keeps_the_query(api):
    """The page reads ?project= and ?ws= from its URL; the redirect must not lose them (review 7 #12)."""
    http = _client(api)
    query = "project=p1&ws=ws%3A%2F%2Fh%3A9000%2F"
    moved = http.simulate_get("/console", query_string=query)
    assert (moved.status_code, moved.headers["location"]) == (301, f"/console/?{query}")
    assert http.simulate_get("/console").headers["location"] == "/console/"


def test_config_names_the_websocket_of_this_server(api):
    http = _client(api, console.ConsoleSettings(websocket_host="127.0.0.1", websocket_port=9000,
                                                poll_interval=1.5))
    got = http.simulate_get("/console/config.json", headers={"Host": "127.0.0.1:8888"})
    assert got.json == {
        "websocket_url": "ws://127.0.0.1:9000/", "poll_interval": 1.5, "version": zaqar.__version__}


@pytest.mark.parametrize("host", ["mq.example.com:8888", "192.0.2.2", "[2001:db8::1]:8888"])
def test_a_loopback_websocket_is_not_offered_to_a_browser_elsewhere(api, host):
    """That browser cannot open ws://127.0.0.1:9000/: the page is told to use HTTP (review 7 #2)."""
    http = _client(api, console.ConsoleSettings(websocket_host="127.0.0.1", websocket_port=9000))
    assert http.simulate_get("/console/config.json", headers={"Host": host}).json["websocket_url"] is None
    for local in ("localhost:8888", "127.0.0.1", "[::1]:8888"):
        got = http.simulate_get("/console/config.json", headers={"Host": local})
        assert got.json["websocket_url"] == "ws://127.0.0.1:9000/", local


def test_a_wildcard_websocket_bind_uses_the_host_the_browser_asked_for(api):
    http = _client(api, console.ConsoleSettings(websocket_host=None, websocket_port=9000))
    got = http.simulate_get("/console/config.json", headers={"Host": "mq.example.com:8888"})
    assert got.json["websocket_url"] == "ws://mq.example.com:9000/"


def test_an_ipv6_websocket_address_is_bracketed():
    settings = console.ConsoleSettings(websocket_host="2001:db8::5", websocket_port=9000)
    assert console.websocket_url(settings, "ignored") == "ws://[2001:db8::5]:9000/"
    loopback = console.ConsoleSettings(websocket_host="::1", websocket_port=9000)
    assert console.websocket_url(loopback, "[::1]") == "ws://[::1]:9000/"


def test_console_options_from_config(api, tmp_path):
    conf = _conf(tmp_path, "[console]\npath = /ops/console\nwebsocket_url = wss://mq.example.com/ws\n"
                           "poll_interval = 5\n")
    http = falcon.testing.TestClient(bootstrap.build_wsgi_app(conf, api))
    assert http.simulate_get("/console/").status_code == 404
    assert http.simulate_get("/ops/console/").status_code == 200
    assert http.simulate_get("/ops/console/config.json").json["websocket_url"] == "wss://mq.example.com/ws"
    assert http.simulate_get("/ops/console/config.json").json["poll_interval"] == 5


def test_without_a_websocket_transport_the_page_is_told_to_use_http(tmp_path):
    settings = bootstrap.console_settings(_conf(tmp_path, "[drivers]\ntransport = wsgi\n"))
    assert settings is not None and console.websocket_url(settings, "h") is None


@pytest.mark.parametrize(("text", "served"), [
    ("", True),  # default bind 127.0.0.1
    ("[drivers:transport:wsgi]\nbind = ::1\n", True),
    ("[drivers:transport:wsgi]\nbind = localhost\n", True),
    ("[drivers:transport:wsgi]\nbind = 0.0.0.0\n", False),
    ("[drivers:transport:wsgi]\nbind = 192.0.2.10\n", False),
    ("[drivers:transport:wsgi]\nbind = 0.0.0.0\n[console]\nenabled = true\n", True),
    ("[console]\nenabled = false\n", False),
], ids=["default", "ipv6-loopback", "localhost", "wildcard", "public", "forced-on", "forced-off"])
def test_on_by_default_only_when_the_http_api_binds_loopback(api, tmp_path, text, served):
    http = falcon.testing.TestClient(bootstrap.build_wsgi_app(_conf(tmp_path, text), api))
    assert http.simulate_get("/console/").status_code == (200 if served else 404)


@pytest.mark.parametrize(("text", "served"), [
    ("", False),  # [drivers:transport:wsgi] bind is not what uwsgi or gunicorn binds
    ("[drivers:transport:wsgi]\nbind = ::1\n", False),
    ("[console]\nenabled = true\n", True),
], ids=["default", "loopback-bind", "forced-on"])
def test_under_another_wsgi_server_only_when_enabled(api, tmp_path, text, served):
    app = bootstrap.build_wsgi_app(_conf(tmp_path, text), api, own_server=False)
    assert falcon.testing.TestClient(app).simulate_get("/console/").status_code == (200 if served else 404)


APPLICATION = """
import json, os, falcon.testing
from zaqar.transport.wsgi import application as entry
answers = []
for config in os.environ["CONFIGS"].split(os.pathsep):
    os.environ["ZAQAR_CONFIG_FILE"] = config
    client = falcon.testing.TestClient(entry.PerProcessApp(entry.load_conf()))
    page = client.simulate_get("/console/")
    settings = client.simulate_get("/console/config.json", headers={"Host": "192.0.2.2:8888"})
    offered = settings.json["websocket_url"] if settings.status_code == 200 else None
    answers.append([page.status_code, offered])
print(json.dumps(answers))
"""


def test_the_wsgi_entry_point_serves_the_console_only_when_enabled(tmp_path):
    """uwsgi/gunicorn load zaqar.transport.wsgi.application; with a default zaqar.conf the console is off."""
    configs = []
    for name, extra in (("default", ""), ("enabled", "[console]\nenabled = true\n")):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "zaqar.conf"
        path.write_text(f"[DEFAULT]\nstate_path = {tmp_path / name}\n{extra}")
        configs.append(str(path))
    env = {**os.environ, "ZAQAR_CONFIG_FILE": configs[0], "CONFIGS": os.pathsep.join(configs)}
    done = subprocess.run([sys.executable, "-c", APPLICATION], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    # enabled: served, but the default websocket (127.0.0.1:9000) is not offered to a remote browser
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[404, None], [200, None]]


@auth_setup.IGNORE_WEBOB_CGI
def test_with_keystone_the_console_loads_without_a_token_and_the_api_still_needs_one(api, tmp_path, keystone):
    """Static files: neither a page load nor a module import can send a token (review 7 #3)."""
    options = "".join(f"{k} = {v}\n" for k, v in keystone.options.items())
    conf = _conf(tmp_path, f"[DEFAULT]\nauth_strategy = keystone\n[keystone_authtoken]\n{options}")
    http = falcon.testing.TestClient(bootstrap.build_wsgi_app(conf, api))
    for path in ("/console/", "/console/console.js", "/console/client/zaqar.js", "/console/config.json"):
        assert http.simulate_get(path).status_code == 200, path
    assert http.simulate_get("/console").status_code == 301
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p"}
    for path in ("/v2/queues", "/v2/", "/console/../v2/queues", "/console/client/../../v2/queues",
                 "/console/%2e%2e/v2/queues"):
        assert http.simulate_get(path, headers=headers).status_code == 401, path
    token = {**headers, "X-Auth-Token": keystone.issue("p")}
    assert http.simulate_get("/v2/queues", headers=token).status_code == 200


@pytest.mark.parametrize("path", ["/v2", "/v2/console", "console", "/"])
def test_console_path_must_stay_out_of_the_api(path):
    with pytest.raises(ValueError):
        console.ConsoleSettings(path=path)


@pytest.mark.slow
def test_a_wheel_ships_the_browser_assets(tmp_path):
    """A non-editable install must serve the console too: the assets are package data."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "zaqar", src / "zaqar", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("zaqar-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"zaqar/static/{name}" for name in STATIC_FILES} <= names
