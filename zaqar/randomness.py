"""Random ids from the operating system's generator, drawn a block at a time.

# PERF: ``os.urandom`` (and so ``secrets`` and ``uuid.uuid4``) is a getrandom()
# system call, and CPython lets go of the GIL around it. A post drew one for
# the request id and one for each message id, a claim one more: on a loaded
# server each was a point where the worker threads convoyed on the GIL. This
# draws ``BLOCK`` bytes in one call and hands out slices, so ids keep the
# OS generator's quality at one system call per few hundred ids.

Used by every layer (transport request ids, storage message and claim ids),
so it lives beside them rather than in any one of them.
"""

from __future__ import annotations

import os
import threading

BLOCK = 4096


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._at = 0

    def take(self, count: int) -> bytes:
        if count > BLOCK:
            return os.urandom(count)
        with self._lock:
            if self._at + count > len(self._block):
                self._block, self._at = os.urandom(BLOCK), 0
            start = self._at
            self._at += count
            return self._block[start:self._at]

    def forget(self) -> None:
        """In a forked child: bytes the parent may also hand out must never be used here."""
        self._lock = threading.Lock()
        self._block, self._at = b"", 0


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def token_bytes(count: int) -> bytes:
    """``count`` random bytes (as ``secrets.token_bytes``)."""
    return _POOL.take(count)


def token_hex(count: int) -> str:
    """``count`` random bytes as ``2 * count`` hex digits (as ``secrets.token_hex``)."""
    return _POOL.take(count).hex()


def uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hex digits (as ``uuid.uuid4().hex``)."""
    raw = bytearray(_POOL.take(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()
