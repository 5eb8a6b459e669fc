"""Pooled random ids: unique, well formed, and never repeated by a forked worker."""

from __future__ import annotations

import os
import uuid
import warnings

from zaqar import randomness


def test_ids_are_well_formed_and_do_not_repeat():
    ids = [randomness.uuid4_hex() for _ in range(5000)]  # more than one block's worth
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(hex=i).version == 4 and uuid.UUID(hex=i).hex == i for i in ids)
    tails = [randomness.token_hex(4) for _ in range(2000)]
    assert all(len(t) == 8 and int(t, 16) >= 0 for t in tails)


def test_a_forked_worker_never_hands_out_the_parents_ids():
    """uwsgi and gunicorn fork workers from a parent that may already have drawn ids."""
    randomness.uuid4_hex()  # the parent has a block in hand
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
        pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.write(write, "".join(randomness.uuid4_hex() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 65536):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = "".join(randomness.uuid4_hex() for _ in range(50))
    child_ids = {child.decode()[i:i + 32] for i in range(0, len(child), 32)}
    parent_ids = {parent[i:i + 32] for i in range(0, len(parent), 32)}
    assert len(child_ids) == 50 and not child_ids & parent_ids
