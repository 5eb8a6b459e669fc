"""The embedded SQLite message store (``sqlite:///<absolute path>``)."""

from zaqar.storage.sqlite.driver import DataDriver

__all__ = ["DataDriver"]
