"""SQLite transactions as edged's stores take them: one connection, shared by threads under a
lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate_transaction(
    db: sqlite3.Connection, lock: threading.Lock
) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE under `lock`; COMMIT after the block, ROLLBACK when it raises (unless
    SQLite rolled back by itself, as it does on some errors: a full disk among them)."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
