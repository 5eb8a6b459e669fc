"""The SQL message store (PostgreSQL, MySQL/MariaDB) on SQLAlchemy Core."""

from zaqar.storage.sql.driver import DataDriver

__all__ = ["DataDriver"]
