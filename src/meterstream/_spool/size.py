"""How big a spool is: the pages its data uses, and its files on disk."""

from __future__ import annotations

import os
import sqlite3

__all__ = ["disk_bytes", "used_bytes"]


def used_bytes(db: sqlite3.Connection) -> int:
    """Bytes the database's pages in use take (free pages not counted)."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def disk_bytes(path: str) -> int:
    """Bytes on disk: the database file at *path* and its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(path + suffix)
        except OSError:
            pass
    return total
