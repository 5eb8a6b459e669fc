"""How the SQL stores write a project into a key column, and read it back.

One rule for SQLite and SQLAlchemy, because the management store lists
(project, queue) pairs and must decode exactly what the message stores encode.
"""

from __future__ import annotations


def project_key(project: str | None) -> str:
    """Encode a project so that ``None`` differs from every real project name.

    ``None`` is stored as the empty string and a real name gets a one
    character prefix, so even the project ``""`` stays distinct from ``None``.
    """
    return "" if project is None else "p" + project


def project_from_key(key: str) -> str | None:
    """The inverse of ``project_key``."""
    return None if key == "" else key[1:]
