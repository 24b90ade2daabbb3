"""The durable spool: a SQLite database (WAL) between ``record()`` and delivery.

An event is committed before ``record()`` returns (in its own transaction, or
in one shared with the threads recording at the same moment); it leaves the
``pending`` table only when Stripe accepted it (deleted) or refused it (moved
to ``dead`` with the reason). Several processes may share one file: a process
*claims* the events it sends by writing its owner id and a lease deadline on
them, renews the leases while it still holds them, and the events of a
process that died are claimed again by another once their lease ran out
(sooner, when the owner's pid is known to be dead on this host). An event can
so be sent twice only when a lease ran out under a live sender, and then under
the same identifier, which Stripe's 24-hour dedupe drops.

How a row keeps a value (big ints and Decimals as text): :mod:`._spool_rows`.
"""

from __future__ import annotations

import copy
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from ._events import RawEvent, identifier_prefix
from ._fold_store import FOLD_CHUNK, fold_in_transaction
from ._internal import logger
from ._spool_admin import SpoolAdmin
from ._spool_checkpoint import Checkpointer
from ._spool_rows import decode_dimensions, decode_value, encode_dimensions, encode_value
from .errors import ConfigurationError

__all__ = ["DeadLetter", "Spool", "SpoolFull", "SpooledBatch"]

SCHEMA_VERSION = 1
SYNC_MODES = ("normal", "full")
#: How long a claim holds before another process may take the events over.
DEFAULT_LEASE = 30.0
#: How long accepted events are kept for reconciliation: Stripe's own window.
DEFAULT_HISTORY = 35 * 86400.0
#: Record-path inserts between two looks at the spool's size.
SIZE_CHECK_EVERY = 256
#: Row numbers one ``IN (...)`` statement takes (under SQLite's old limit of 999 parameters).
IN_LIMIT = 500
#: How long a thread waits for its group's leader before trying to lead it.
LEADER_PATIENCE = 1.0
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value NOT NULL
) WITHOUT ROWID;
"""

_INSERT_USE = (
    "INSERT INTO uses (event_name, customer, value, window_start, window_end, dimensions) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)

_INSERT = (
    "INSERT INTO pending (event_name, customer, value, ts, identifier, dimensions) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_COLUMNS = (
    "p.seq, p.event_name, p.customer, p.value, p.ts, p.identifier, p.dimensions, "
    "coalesce(c.attempts, 0)"
)
_FROM = " FROM pending p LEFT JOIN claims c ON c.seq = p.seq"


class SpoolFull(Exception):
    """The spool holds ``spool_max_bytes``: the overflow policy decides."""


@dataclass
class SpooledBatch:
    """Events claimed from the spool: their row numbers and recorded tuples."""

    seqs: list[int]
    events: list[RawEvent]
    attempts: list[int]

    def __len__(self) -> int:
        return len(self.seqs)


@dataclass
class DeadLetter:
    """Why an event was moved to the dead-letter table."""

    seq: int
    reason: str
    code: Optional[str] = None
    message: Optional[str] = None


def _row_event(row: Sequence[Any]) -> RawEvent:
    _, name, customer, value, ts, identifier, dimensions = row[:7]
    return (name, customer, decode_value(value), ts, identifier, decode_dimensions(dimensions))


def _new_owner() -> int:
    return random.getrandbits(62) + 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


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


class Spool(SpoolAdmin):
    """One process's handle on a spool file.

    Args:
        path: the database file; created (with its directory's permission) if absent.
        sync: ``"normal"`` (safe from a process crash once :meth:`append`
            returns) or ``"full"`` (an fsync per commit: safe from power loss).
        max_bytes: past this size, :meth:`append` raises :class:`SpoolFull`.
        lease: seconds a claim holds before another process may take over.
        history: seconds an accepted event is kept (by its timestamp) for
            ``meterstream reconcile`` and for Stripe's late error reports;
            0 keeps none. The pending events come first: when the spool is
            full, the oldest history goes.
        repair: move a corrupt file aside and start anew (else: ConfigurationError).
        create: create the file when absent (else: ConfigurationError).

    Raises:
        ConfigurationError: the file cannot be opened or created (a read-only
            directory, a file that is not a database, a full disk), naming
            ``spool_path``.
    """

    def __init__(
        self,
        path: str,
        *,
        sync: str = "normal",
        max_bytes: int = 1 << 30,
        lease: float = DEFAULT_LEASE,
        history: float = DEFAULT_HISTORY,
        clock: Callable[[], float] = time.time,
        repair: bool = True,
        create: bool = True,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ConfigurationError(f"spool_sync: expected normal or full, got {sync!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.sync = sync
        self.max_bytes = max_bytes
        self.lease = lease
        self.history = history
        self._clock = clock
        self._repair = repair
        if not create and not os.path.exists(self.path):
            raise ConfigurationError(f"spool_path: there is no spool at {self.path!r}")
        #: Set when the corrupt file found at open was moved aside (its new name).
        self.moved_aside: Optional[str] = None
        self._open()

    # -- opening ----------------------------------------------------------------

    def _open(self) -> None:
        self._lock = threading.Lock()
        #: Rows waiting for the connection to be inserted together (group commit).
        self._open_group: Optional[_Group] = None
        self._group_lock = threading.Lock()
        self._owner = _new_owner()
        self._pid = os.getpid()
        self._inserts = 0
        self.full = False
        is_sqlite = _looks_like_sqlite(self.path)
        if is_sqlite is False:
            raise ConfigurationError(
                f"spool_path: {self.path!r} exists and is not a SQLite database; "
                "refusing to touch it (point spool_path at a new file)"
            )
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if is_sqlite and _is_corruption(exc) and self._repair:
                self._move_aside(exc)
                self._db = self._connect()
            else:
                raise ConfigurationError(_open_error(self.path, exc)) from None
        #: Copies the write-ahead log back into the file, off the record path.
        self._checkpointer = Checkpointer(self.path)
        self._register()
        self._update_full()

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise ConfigurationError(f"spool_path: the directory {directory!r} does not exist")
        try:
            db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000.0,
            )
        except sqlite3.OperationalError as exc:
            raise ConfigurationError(_open_error(self.path, exc)) from None
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigurationError(
                    f"spool_path: {self.path!r} cannot use write-ahead logging (journal mode "
                    f"{mode!r}); is it on a network file system?"
                )
            db.execute(f"PRAGMA synchronous={self.sync.upper()}")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_size_limit=67108864")
            # Checkpoints run on the Checkpointer's thread, not inside a commit.
            db.execute("PRAGMA wal_autocheckpoint=0")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"spool_path: {self.path!r} was written by a newer meterstream "
                    f"(schema {version}; this version reads {SCHEMA_VERSION})"
                )
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock()))
        target = f"{self.path}.corrupt-{stamp}"
        n = 1
        while os.path.exists(target):
            n += 1
            target = f"{self.path}.corrupt-{stamp}-{n}"
        try:
            os.rename(self.path, target)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.rename(self.path + suffix, target + suffix)
        except OSError as err:
            raise ConfigurationError(
                f"spool_path: {self.path!r} is corrupt ({exc}) and could not be moved "
                f"aside: {err.strerror}"
            ) from None
        self.moved_aside = target
        logger.error(
            "the spool %s was corrupt (%s): moved aside to %s, and a new spool started; "
            "events in the old file were not delivered",
            self.path,
            exc,
            target,
        )

    def _register(self) -> None:
        now = self._clock()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO owners (owner, pid, host, seen) VALUES (?, ?, ?, ?)",
                (self._owner, os.getpid(), socket.gethostname(), now),
            )
        self.reap()

    # -- the record path --------------------------------------------------------------

    def append(self, event: RawEvent) -> None:
        """Insert one recorded use, durably: committed before this returns
        (in its own transaction, or in one with other threads' rows: :meth:`_insert`).

        Raises:
            SpoolFull: the spool holds ``max_bytes``.
            sqlite3.Error: the insert failed (disk full, I/O error, locked too long).
        """
        if self.full:
            raise SpoolFull(self.path)
        name, customer, value, ts, identifier, dimensions = event
        if type(identifier) is not str:
            identifier = identifier_prefix() + str(identifier)
        row = (
            name,
            customer,
            encode_value(value),
            ts,
            identifier,
            encode_dimensions(dimensions) if dimensions else None,
        )
        self._insert(_INSERT, row)

    def _insert(self, statement: str, row: tuple[Any, ...]) -> None:
        """Run the insert *statement* for *row*, committed before this returns.

        Group commit: alone, the row is its own transaction. When other threads
        insert at the same time, they queue their rows, and the first to hold
        the connection commits every queued row (its own too) in one
        transaction, in the order they came; each caller returns once the
        transaction holding its row committed, and when it failed, every caller
        in it raises its error (nothing is said to be stored that is not). Any
        insert statement may go through here: a group runs each statement's
        rows with one ``executemany``.

        Raises:
            sqlite3.Error: the transaction holding the row failed.
        """
        lock = self._lock
        if lock.acquire(False):
            try:
                group = self._open_group
                if group is None:
                    self._db.execute(statement, row)
                    self._inserts += 1
                    if statement is _INSERT_USE:
                        self.uses_appended += 1
                    check = self._inserts % SIZE_CHECK_EVERY == 0
                else:  # others wait for the connection: take them along
                    with self._group_lock:
                        self._open_group = None
                        group.rows.append((statement, row))
                    check = self._commit_group(group)
            finally:
                lock.release()
        else:
            with self._group_lock:
                group = self._open_group
                leader = group is None
                if group is None:
                    group = self._open_group = _Group()
                group.rows.append((statement, row))
            check = False
            if leader:
                with lock:
                    check = self._take_and_commit(group)
            else:
                # The leader commits the group, unless a thread already holding
                # the connection takes it along first; should the leader never
                # come (interrupted while waiting), a follower takes its place.
                while not group.committed.wait(LEADER_PATIENCE):
                    if lock.acquire(False):
                        try:
                            check = self._take_and_commit(group)
                        finally:
                            lock.release()
        if check:
            self._update_full()
        if group is not None and group.error is not None:
            # Each caller raises its own copy: threads must not share a traceback.
            raise copy.copy(group.error) from None

    def _take_and_commit(self, group: _Group) -> bool:
        # The lock held. A group leaves _open_group only with the lock held and
        # is done before the lock is released: not done means still open.
        if group.done:
            return False
        with self._group_lock:
            self._open_group = None
        return self._commit_group(group)

    def _commit_group(self, group: _Group) -> bool:
        """Insert *group*'s rows in one transaction (the lock held); its error
        goes to every caller in it. True when the spool's size is due a look."""
        db = self._db
        rows = group.rows
        try:
            if len(rows) == 1:
                db.execute(*rows[0])
            else:
                db.execute("BEGIN IMMEDIATE")
                start = 0
                while start < len(rows):
                    statement = rows[start][0]
                    end = start + 1
                    while end < len(rows) and rows[end][0] == statement:
                        end += 1
                    db.executemany(statement, [row for _, row in rows[start:end]])
                    start = end
                db.execute("COMMIT")
        except BaseException as exc:
            group.error = exc
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return False
        finally:
            group.done = True
            group.committed.set()
        before = self._inserts
        self._inserts += len(rows)
        self.uses_appended += sum(1 for statement, _ in rows if statement is _INSERT_USE)
        return before // SIZE_CHECK_EVERY != self._inserts // SIZE_CHECK_EVERY

    # -- uses folded in the spool (aggregate with spool_path) -------------------------

    def append_use(
        self,
        event_name: str,
        customer: str,
        value: Union[int, str],
        window_start: float,
        window_end: float,
        dimensions: Optional[str],
    ) -> None:
        """Insert one use of a folded event name, durably (group commit, as :meth:`append`).

        *value* is an int or the exact decimal text of the value; *dimensions*
        the canonical JSON text of the dimensions (:func:`fold_dimensions`).
        :meth:`fold_due` turns the uses of ended windows into pending events.

        Raises:
            SpoolFull: the spool holds ``max_bytes``.
            sqlite3.Error: the insert failed (disk full, I/O error, locked too long).
        """
        if self.full:
            raise SpoolFull(self.path)
        self._insert(
            _INSERT_USE, (event_name, customer, value, window_start, window_end, dimensions)
        )

    #: Uses this handle inserted (:meth:`append_use`), for ``stats()``.
    uses_appended = 0

    def fold_due(self, now: float, *, force: bool = False, chunk: int = FOLD_CHUNK) -> int:
        """Fold the uses of every window ended by *now* (every window, when
        *force*) into pending events, in one write transaction.

        The uses are read, summed exactly, inserted into ``pending`` as
        events with identifiers fixed now, and deleted, all before the
        commit: a crash before it leaves the uses to fold again, a crash
        after it leaves events to deliver like any other. ``BEGIN
        IMMEDIATE`` makes two processes folding at once take turns; the
        second finds nothing left. Past *chunk* uses, the fold takes
        several transactions, letting records in between. Returns how many
        events were made.
        """
        made, more = 0, True
        while more:
            with self._lock, self._write():
                count, more = fold_in_transaction(self._db, now, force, chunk)
            made += count
        return made

    def uses_count(self) -> int:
        """Uses waiting in the spool to be folded (every process's)."""
        with self._lock:
            count: int = self._db.execute("SELECT count(*) FROM uses").fetchone()[0]
        return count

    def oldest_use_end(self) -> Optional[float]:
        """When the window of the oldest waiting use ends (None: no use waits).

        A cheap look (the first row) before taking the write lock to fold.
        """
        with self._lock:
            row = self._db.execute("SELECT window_end FROM uses ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    # -- delivery ---------------------------------------------------------------------

    def claim(self, limit: int) -> SpooledBatch:
        """Claim up to *limit* of the oldest events nobody holds and that are due."""
        now = self._clock()
        with self._lock, self._write():
            rows = self._db.execute(
                f"SELECT {_COLUMNS}{_FROM} WHERE c.seq IS NULL "
                "OR ((c.owner = 0 OR c.lease < ?) AND c.not_before <= ?) ORDER BY p.seq LIMIT ?",
                (now, now, limit),
            ).fetchall()
            lease = now + self.lease
            for chunk in _chunks([row[0] for row in rows]):
                self._db.execute(
                    "INSERT OR REPLACE INTO claims (seq, owner, lease, not_before, attempts) "
                    f"SELECT p.seq, ?, ?, 0, coalesce(c.attempts, 0){_FROM} "
                    f"WHERE p.seq IN {_marks(len(chunk))}",
                    (self._owner, lease, *chunk),
                )
        return SpooledBatch(
            [row[0] for row in rows], [_row_event(row) for row in rows], [row[7] for row in rows]
        )

    def ack(self, seqs: Iterable[int]) -> int:
        """Stripe accepted these events: they leave the pending table.

        With a history, they are kept in ``accepted`` (once per identifier,
        as Stripe counts them) for reconciliation and late error reports.
        """
        now = self._clock()
        deleted = 0
        with self._lock, self._write():
            # One statement per table for the whole batch, not one per event.
            for chunk in _chunks(list(seqs)):
                marks = _marks(len(chunk))
                if self.history > 0:
                    self._db.execute(
                        "INSERT OR IGNORE INTO accepted "
                        "(identifier, event_name, customer, value, ts, accepted_at) "
                        "SELECT identifier, event_name, customer, value, ts, ? FROM pending "
                        f"WHERE seq IN {marks} ORDER BY seq",
                        (now, *chunk),
                    )
                deleted += self._db.execute(
                    f"DELETE FROM pending WHERE seq IN {marks}", chunk
                ).rowcount
                self._db.execute(f"DELETE FROM claims WHERE seq IN {marks}", chunk)
        self._checkpointer.wake()
        return deleted

    def prune_history(self, keep_bytes: Optional[int] = None) -> int:
        """Forget accepted events older than the history; with *keep_bytes*,
        also the oldest ones until the spool is below that size."""
        cutoff = self._clock() - self.history
        with self._lock, self._write():
            pruned: int = self._db.execute("DELETE FROM accepted WHERE ts < ?", (cutoff,)).rowcount
            self._db.execute(
                "DELETE FROM handled_events WHERE handled_at < ?",
                (self._clock() - max(self.history, 30 * 86400.0),),
            )
        while keep_bytes is not None and self.size_bytes() > keep_bytes:
            with self._lock, self._write():
                gone = self._db.execute(
                    "DELETE FROM accepted WHERE identifier IN "
                    "(SELECT identifier FROM accepted ORDER BY ts LIMIT 500)"
                ).rowcount
            if not gone:
                break
            pruned += gone
        return pruned

    def accepted_between(
        self, start: float, end: float, event_name: Optional[str] = None
    ) -> list[tuple[str, str, Any, float, float]]:
        """Accepted events with ``start <= timestamp < end``:
        ``(event_name, customer, value, timestamp, accepted_at)``, oldest first."""
        query = (
            "SELECT event_name, customer, value, ts, accepted_at FROM accepted "
            "WHERE ts >= ? AND ts < ?"
        )
        args: tuple[Any, ...] = (start, end)
        if event_name is not None:
            query += " AND event_name = ?"
            args += (event_name,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY ts", args).fetchall()
        return [(n, c, decode_value(v), ts, at) for n, c, v, ts, at in rows]

    def release(self, seqs: Iterable[int], delay: float = 0.0) -> None:
        """Give claimed events back to wait *delay* seconds (a batch out of retry time)."""
        not_before = self._clock() + delay
        with self._lock, self._write():
            for chunk in _chunks(list(seqs)):
                self._db.execute(
                    "UPDATE claims SET owner = 0, lease = 0, not_before = ?, "
                    f"attempts = attempts + 1 WHERE seq IN {_marks(len(chunk))}",
                    (not_before, *chunk),
                )

    def bury(self, letters: Iterable[DeadLetter]) -> int:
        """Move events to the dead-letter table with their reasons."""
        now = self._clock()
        moved = 0
        with self._lock, self._write():
            for letter in letters:
                cursor = self._db.execute(
                    "INSERT INTO dead (event_name, customer, value, ts, identifier, "
                    "dimensions, attempts, reason, code, message, dead_at) "
                    "SELECT p.event_name, p.customer, p.value, p.ts, p.identifier, "
                    f"p.dimensions, coalesce(c.attempts, 0), ?, ?, ?, ?{_FROM} WHERE p.seq = ?",
                    (letter.reason, letter.code, letter.message, now, letter.seq),
                )
                if cursor.rowcount:
                    self._db.execute("DELETE FROM pending WHERE seq = ?", (letter.seq,))
                    self._db.execute("DELETE FROM claims WHERE seq = ?", (letter.seq,))
                    moved += 1
        return moved

    def bury_identifiers(
        self, identifiers: Iterable[str], reason: str, code: Optional[str], message: Optional[str]
    ) -> int:
        """Move the events with these identifiers to the dead letters: those
        Stripe accepted and later refused (its asynchronous error reports),
        and any still pending.

        Returns how many were found. Pending events are found by a scan: an
        index by identifier would cost every ``record()`` a second B-tree insert.
        """
        wanted = set(identifiers)
        now = self._clock()
        found = 0
        with self._lock, self._write():
            for ident in wanted:
                moved = self._db.execute(
                    "INSERT INTO dead (event_name, customer, value, ts, identifier, dimensions, "
                    "attempts, reason, code, message, dead_at) "
                    "SELECT event_name, customer, value, ts, identifier, NULL, 0, ?, ?, ?, ? "
                    "FROM accepted WHERE identifier = ?",
                    (reason, code, message, now, ident),
                ).rowcount
                if moved:
                    self._db.execute("DELETE FROM accepted WHERE identifier = ?", (ident,))
                    found += moved
            seqs = [
                seq
                for seq, ident in self._db.execute("SELECT seq, identifier FROM pending")
                if ident in wanted
            ]
        return found + self.bury(DeadLetter(seq, reason, code, message) for seq in seqs)

    def claim_event(self, event_id: str) -> bool:
        """Take a Stripe event (an error report) to handle: False when any process
        has taken it before. One statement, so two processes never both get it."""
        with self._lock, self._write():
            taken: int = self._db.execute(
                "INSERT OR IGNORE INTO handled_events (event_id, handled_at) VALUES (?, ?)",
                (event_id, self._clock()),
            ).rowcount
        return taken == 1

    def release_event(self, event_id: str) -> None:
        """Handling a claimed event failed: let a later delivery of it be handled."""
        with self._lock, self._write():
            self._db.execute("DELETE FROM handled_events WHERE event_id = ?", (event_id,))

    def was_handled(self, event_id: str) -> bool:
        """Whether a Stripe event was taken to handle already, by any process."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM handled_events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return row is not None

    def known_dead(self, identifiers: Iterable[str]) -> set[str]:
        """Which of *identifiers* are already dead letters (a report seen twice)."""
        with self._lock:
            return {
                ident
                for ident in set(identifiers)
                if self._db.execute(
                    "SELECT 1 FROM dead WHERE identifier = ? LIMIT 1", (ident,)
                ).fetchone()
            }

    def renew(self) -> None:
        """Extend the leases of everything this process holds, and say it is alive."""
        now = self._clock()
        with self._lock, self._write():
            self._db.execute(
                "UPDATE claims SET lease = ? WHERE owner = ?", (now + self.lease, self._owner)
            )
            self._db.execute("UPDATE owners SET seen = ? WHERE owner = ?", (now, self._owner))

    def reap(self) -> int:
        """Free at once the claims of processes known to be dead on this host.

        Returns how many events were freed.
        """
        host = socket.gethostname()
        with self._lock:
            owners = self._db.execute(
                "SELECT owner, pid FROM owners WHERE host = ? AND owner != ?", (host, self._owner)
            ).fetchall()
        dead = [owner for owner, pid in owners if not _pid_alive(pid)]
        freed = 0
        if dead:
            with self._lock, self._write():
                for owner in dead:
                    freed += self._free(owner)
                    self._db.execute("DELETE FROM owners WHERE owner = ?", (owner,))
        return freed

    def _free(self, owner: int) -> int:
        # Called in a write transaction: claims of *owner* become free at once.
        return self._db.execute(
            "UPDATE claims SET owner = 0, lease = 0 WHERE owner = ?", (owner,)
        ).rowcount

    def evict_oldest(self, count: int = 1) -> list[RawEvent]:
        """Delete the *count* oldest events nobody holds (``overflow="drop_oldest"``);
        returns them, for ``on_delivery_error``."""
        now = self._clock()
        with self._lock, self._write():
            rows = self._db.execute(
                f"SELECT {_COLUMNS}{_FROM} WHERE c.seq IS NULL OR c.owner = 0 OR c.lease < ? "
                "ORDER BY p.seq LIMIT ?",
                (now, count),
            ).fetchall()
            for row in rows:
                self._db.execute("DELETE FROM pending WHERE seq = ?", (row[0],))
                self._db.execute("DELETE FROM claims WHERE seq = ?", (row[0],))
        return [_row_event(row) for row in rows]

    def pending_count(self) -> int:
        with self._lock:
            count: int = self._db.execute("SELECT count(*) FROM pending").fetchone()[0]
        return count

    def last_seq(self) -> int:
        """The newest row number waiting (0 for an empty spool).

        Row numbers only grow while rows wait (SQLite gives max + 1), so
        every event recorded before this call has a number up to the result.
        """
        with self._lock:
            seq: Optional[int] = self._db.execute("SELECT max(seq) FROM pending").fetchone()[0]
        return seq or 0

    def pending_upto(self, seq: int) -> int:
        """How many events numbered up to *seq* still wait (anyone's)."""
        with self._lock:
            count: int = self._db.execute(
                "SELECT count(*) FROM pending WHERE seq <= ?", (seq,)
            ).fetchone()[0]
        return count

    # -- size -------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes the spool's data uses: the database's pages in use.

        What ``spool_max_bytes`` bounds. The write-ahead log comes on top,
        up to 64 MiB (``journal_size_limit``) between checkpoints.
        """
        with self._lock:
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def disk_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def refresh_full(self) -> None:
        """Look at the spool's size again now (``full`` is otherwise refreshed
        every few hundred appends)."""
        self._update_full()

    def _update_full(self) -> None:
        # Called every SIZE_CHECK_EVERY inserts, and after each ack: the
        # write-ahead log has grown by a few hundred pages since the last time.
        self._checkpointer.wake()
        try:
            self.full = self.size_bytes() >= self.max_bytes
        except sqlite3.Error:
            pass

    # -- lifecycle ----------------------------------------------------------------------

    def _write(self) -> _Transaction:
        return _Transaction(self._db)

    def after_fork_in_child(self) -> None:
        """A forked child gets its own connection and owner id; the parent's claims stay its."""
        # The parent's connection (and checkpoint thread) are not ours.
        self._open()

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            try:
                self._db.execute("DELETE FROM owners WHERE owner = ?", (self._owner,))
                self._free(self._owner)
            except sqlite3.Error:
                pass
            self._db.close()


class _Group:
    """Rows queued to be inserted in one transaction, and how it ended."""

    __slots__ = ("committed", "done", "error", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[Any, ...]]] = []
        self.done = False
        self.committed = threading.Event()
        self.error: Optional[BaseException] = None


class _Transaction:
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


def _chunks(seqs: list[int]) -> Iterator[list[int]]:
    """*seqs* in pieces a statement's ``IN (?, ...)`` takes (SQLite's old
    default limit is 999 parameters)."""
    for start in range(0, len(seqs), IN_LIMIT):
        yield seqs[start : start + IN_LIMIT]


def _marks(count: int) -> str:
    """``(?, ?, ...)`` for *count* parameters."""
    return "(" + ",".join("?" * count) + ")"


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
