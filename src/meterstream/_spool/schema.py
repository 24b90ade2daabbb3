"""Opening a spool file: its schema, the connection's settings, a corrupt file.

:func:`open_database` refuses a file that is not SQLite, connects with write-
ahead logging and the sync mode asked for, runs ``PRAGMA quick_check``,
creates the tables, and moves a corrupt file aside (with its log) to start
anew when asked to repair. Every error is a :class:`ConfigurationError`
naming ``spool_path`` and a likely cause. :class:`Transaction` is how the
spool's parts write: ``BEGIN IMMEDIATE`` takes the write lock up front.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Callable, Optional

from meterstream._internal import logger
from meterstream._spool.checkpoint import SAFETY_NET_FRAMES
from meterstream.errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "Transaction", "open_database"]

#: 2: the ``uses`` and ``meta`` tables of uses aggregated in the spool. A build
#: that reads only 1 refuses such a file rather than leave its uses unaggregated.
#: 3: recorded events wait in the journal beside the file (``<file>.journal/``),
#: and ``withdrawn`` names those withdrawn before they were sent: a build that
#: reads only 2 refuses the file rather than strand the journal. A file of 2 is
#: taken as it is: its pending rows are delivered first.
#: 4: accepted batches are logged in ``accepted_log``, moved into ``accepted``
#: later: a build that reads only 3 refuses the file rather than miss the
#: log's events (reconcile, cancel, Stripe's reports). A file of 3 is taken
#: as it is: its log starts empty.
SCHEMA_VERSION = 4
#: How long a writer waits for another process's write transaction.
BUSY_TIMEOUT_MS = 10_000
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    event_name TEXT NOT NULL,
    customer TEXT NOT NULL,
    value NOT NULL,
    ts REAL NOT NULL,
    identifier TEXT NOT NULL,
    dimensions TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    seq INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL,
    lease REAL NOT NULL,
    not_before REAL NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_owner ON claims(owner);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    event_name TEXT NOT NULL,
    customer TEXT NOT NULL,
    value NOT NULL,
    ts REAL NOT NULL,
    identifier TEXT NOT NULL,
    dimensions TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    code TEXT,
    message TEXT,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_identifier ON dead(identifier);
CREATE TABLE IF NOT EXISTS accepted (
    identifier TEXT PRIMARY KEY,
    event_name TEXT NOT NULL,
    customer TEXT NOT NULL,
    value NOT NULL,
    ts REAL NOT NULL,
    accepted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS accepted_ts ON accepted(ts);
CREATE TABLE IF NOT EXISTS accepted_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    accepted_at REAL NOT NULL,
    events BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS handled_events (
    event_id TEXT PRIMARY KEY,
    handled_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
    owner INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uses (
    seq INTEGER PRIMARY KEY,
    event_name TEXT NOT NULL,
    customer TEXT NOT NULL,
    value NOT NULL,
    window_start REAL NOT NULL,
    window_end REAL NOT NULL,
    dimensions TEXT
);
CREATE TABLE IF NOT EXISTS withdrawn (
    identifier TEXT PRIMARY KEY,
    withdrawn_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value NOT NULL
) WITHOUT ROWID;
"""


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``): take the write lock up front."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def open_database(
    path: str, sync: str, repair: bool, clock: Callable[[], float]
) -> tuple[sqlite3.Connection, Optional[str]]:
    """The connection to the spool at *path* (absolute), and where a corrupt
    file found there was moved (None when none was).

    Raises:
        ConfigurationError: the file cannot be opened or created, naming ``spool_path``.
    """
    is_sqlite = _looks_like_sqlite(path)
    if is_sqlite is False:
        raise ConfigurationError(
            f"spool_path: {path!r} exists and is not a SQLite database; "
            "refusing to touch it (point spool_path at a new file)"
        )
    try:
        return _connect(path, sync), None
    except sqlite3.DatabaseError as exc:
        if is_sqlite and _is_corruption(exc) and repair:
            moved = _move_aside(path, exc, clock)
            return _connect(path, sync), moved
        raise ConfigurationError(_open_error(path, exc)) from None


def _connect(path: str, sync: str) -> sqlite3.Connection:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigurationError(f"spool_path: the directory {directory!r} does not exist")
    try:
        db = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000.0,
        )
    except sqlite3.OperationalError as exc:
        raise ConfigurationError(_open_error(path, exc)) from None
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigurationError(
                f"spool_path: {path!r} cannot use write-ahead logging (journal mode "
                f"{mode!r}); is it on a network file system?"
            )
        db.execute(f"PRAGMA synchronous={sync.upper()}")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_size_limit=67108864")
        # Checkpoints run on the Checkpointer's thread, not inside a commit.
        db.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_FRAMES}")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"spool_path: {path!r} was written by a newer meterstream "
                f"(schema {version}; this version reads {SCHEMA_VERSION})"
            )
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def _looks_like_sqlite(path: str) -> Optional[bool]:
    """True/False for an existing file with/without SQLite's header; None when absent or empty."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"spool_path: cannot read {path!r}: {exc.strerror}") from None
    if not head:
        return None
    return head == _SQLITE_HEADER


def _move_aside(path: str, exc: BaseException, clock: Callable[[], float]) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock()))
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.rename(path, target)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.rename(path + suffix, target + suffix)
    except OSError as err:
        raise ConfigurationError(
            f"spool_path: {path!r} is corrupt ({exc}) and could not be moved aside: {err.strerror}"
        ) from None
    logger.error(
        "the spool %s was corrupt (%s): moved aside to %s, and a new spool started; "
        "events in the old file were not delivered",
        path,
        exc,
        target,
    )
    return target


def _is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def _open_error(path: str, exc: BaseException) -> str:
    text = str(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        hint = "is its directory writable by this process?"
    elif "full" in lowered:
        hint = "the disk is full"
    elif "locked" in lowered:
        hint = "another process holds it locked"
    else:
        hint = "is it a SQLite database on a local disk?"
    return f"spool_path: cannot open {path!r} ({text}): {hint}"
