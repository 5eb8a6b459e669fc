"""What the browser tests share: the console page seen as a user sees it, a second client, a dead port."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import requests

from tests.server import ServerProcess

PROJECT = "browser"
HEADERS = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}


def dead_port() -> int:
    """A port nothing listens on: connections to it are refused, as by a firewall that rejects."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post_over_http(server: ServerProcess, queue: str, *bodies: Any) -> None:
    """Post as a second client would: plain REST, not through the page."""
    result = requests.post(f"{server.url}/v2/queues/{queue}/messages", headers=HEADERS, timeout=10,
                           json={"messages": [{"body": body, "ttl": 600} for body in bodies]})
    assert result.status_code == 201, result.text


class Console:
    """The console page, seen the way a person uses it."""

    def __init__(self, page: Any, expect: Any) -> None:
        self.page, self.expect = page, expect
        self.api_calls: list[str] = []  # REST calls the page made
        self.errors: list[str] = []
        page.on("request", lambda r: "/v2/" in r.url and self.api_calls.append(f"{r.method} {r.url}"))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str) -> None:
        self.page.goto(url)

    def transport(self, state: str, text: str) -> None:
        self.expect(self.page.locator("#transport")).to_have_attribute("data-state", state)
        self.expect(self.page.locator("#transport-text")).to_contain_text(text)

    def create_queue(self, name: str) -> None:
        self.page.fill("#new-queue", name)
        self.page.click("#create-queue button")
        self.expect(self.page.locator(f'#queues tr[data-queue="{name}"]')).to_be_visible()
        self.expect(self.page.locator("#queue-title")).to_have_text(name)

    def post(self, body: str) -> None:
        self.page.fill("#message-body", body)
        self.page.click("#post-message button")

    def bodies(self, *expected: str) -> None:
        """The message table shows exactly these bodies, in this order."""
        self.expect(self.page.locator("#messages tbody td.body")).to_have_text(list(expected))

    def counts(self, queue: str, free: int, claimed: int, total: int) -> None:
        row = self.page.locator(f'#queues tr[data-queue="{queue}"]')
        for key, value in (("free", free), ("claimed", claimed), ("total", total)):
            self.expect(row.locator(f"td.{key}")).to_have_text(str(value))
