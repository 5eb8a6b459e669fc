"""Mail delivery for ``mailto:`` subscribers, through an SMTP server."""

from __future__ import annotations

import email.message
import json
import logging
import smtplib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOG = logging.getLogger("zaqar.notification")


class Mailer:
    def __init__(self, host: str = "localhost", port: int = 25, sender: str = "zaqar@localhost",
                 timeout: float = 10.0) -> None:
        self._host, self._port, self._sender, self._timeout = host, port, sender, timeout

    def send(self, subscriber: str, options: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
        """Mail the document as JSON; ``?subject=`` in the URI wins over the ``subject`` option."""
        parts = urlsplit(subscriber)
        message = email.message.EmailMessage()
        message["From"] = str(options.get("from") or self._sender)
        message["To"] = parts.path
        subject = parse_qs(parts.query).get("subject", [options.get("subject") or "Zaqar notification"])
        message["Subject"] = str(subject[-1])
        message.set_content(json.dumps(document, indent=2, ensure_ascii=False))
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            LOG.warning("mail to %s failed: %s", parts.path, exc)
            return False
        return True
