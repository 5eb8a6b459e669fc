"""The console page and the JavaScript client, served by the falcon app under ``[console] path``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import falcon.testing
import pytest

import zaqar
from zaqar import bootstrap
from zaqar import conf as zconf
from zaqar.transport import wsgi
from zaqar.transport.wsgi import console

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


def test_config_names_the_websocket_of_this_server(api):
    http = _client(api, console.ConsoleSettings(websocket_host="127.0.0.1", websocket_port=9000,
                                                poll_interval=1.5))
    assert http.simulate_get("/console/config.json").json == {
        "websocket_url": "ws://127.0.0.1:9000/", "poll_interval": 1.5, "version": zaqar.__version__}


def test_a_wildcard_websocket_bind_uses_the_host_the_browser_asked_for(api):
    http = _client(api, console.ConsoleSettings(websocket_host=None, websocket_port=9000))
    got = http.simulate_get("/console/config.json", headers={"Host": "mq.example.com:8888"})
    assert got.json["websocket_url"] == "ws://mq.example.com:9000/"


def test_an_ipv6_websocket_address_is_bracketed():
    settings = console.ConsoleSettings(websocket_host="::1", websocket_port=9000)
    assert console.websocket_url(settings, "ignored") == "ws://[::1]:9000/"


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
