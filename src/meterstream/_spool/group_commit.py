"""The record path's group commit: threads inserting at once share a transaction.

Alone, a row is its own transaction. When other threads insert at the same
time, they queue their rows, and the first to hold the connection commits
every queued row (its own too) in one transaction, in the order they came;
each caller returns once the transaction holding its row committed. When
that transaction fails, each row is tried again on its own, so each caller
gets its own row's outcome: a row that fails by itself (a value SQLite
refuses) costs only its caller, a failure of the file (a full disk) every
caller it hits, and nothing is said to be stored that is not. Any insert
statement may go through: a group runs each statement's rows with one
``executemany``.
"""

from __future__ import annotations

import copy
import sqlite3
import threading
from typing import Any, Optional

__all__ = ["GroupCommit"]

#: Record-path inserts between two looks at the spool's size.
SIZE_CHECK_EVERY = 256
#: How long a thread waits for its group's leader before trying to lead it.
LEADER_PATIENCE = 1.0


class _Group:
    """Rows queued to be inserted in one transaction, and how each one ended."""

    __slots__ = ("committed", "done", "errors", "rows")

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[Any, ...]]] = []
        self.done = False
        self.committed = threading.Event()
        #: Per row (by its index in rows), the error that kept it out, if any.
        self.errors: dict[int, BaseException] = {}


class GroupCommit:
    """Inserts rows through *db*, whose users all hold *lock*, committed before returning.

    Args:
        db: the spool's connection (autocommit mode).
        lock: the lock every user of *db* holds.
        counted: an insert statement whose rows are counted in :attr:`counted`.
        already_counted: where :attr:`counted` starts (a reopened spool's count).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.Lock,
        counted: str,
        already_counted: int = 0,
    ) -> None:
        self._db = db
        self._lock = lock
        self._counted_statement = counted
        #: Rows waiting for the connection to be inserted together.
        self._open: Optional[_Group] = None
        self._group_lock = threading.Lock()
        self._inserts = 0
        #: Rows of the *counted* statement committed through this object.
        self.counted = already_counted

    @property
    def queued(self) -> int:
        """Rows waiting for the connection now."""
        group = self._open
        return 0 if group is None else len(group.rows)

    def insert(self, statement: str, row: tuple[Any, ...]) -> bool:
        """Run the insert *statement* for *row*, committed before this returns.

        Returns:
            True when the spool's size is due a look (every
            ``SIZE_CHECK_EVERY`` rows).

        Raises:
            sqlite3.Error: the transaction holding the row failed.
        """
        lock = self._lock
        if lock.acquire(False):
            try:
                group = self._open
                if group is None:
                    self._db.execute(statement, row)
                    self._inserts += 1
                    if statement is self._counted_statement:
                        self.counted += 1
                    return self._inserts % SIZE_CHECK_EVERY == 0
                # others wait for the connection: take them along
                with self._group_lock:
                    self._open = None
                    index = len(group.rows)
                    group.rows.append((statement, row))
                check = self._commit(group)
            finally:
                lock.release()
        else:
            with self._group_lock:
                group = self._open
                leader = group is None
                if group is None:
                    group = self._open = _Group()
                index = len(group.rows)
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
        error = group.errors.get(index)
        if error is not None:
            # Each caller raises its own copy: threads must not share a traceback.
            raise copy.copy(error) from None
        return check

    def fork_lock(self) -> threading.Lock:
        """The lock of the group being formed (taken inside the connection's)."""
        return self._group_lock

    def _take_and_commit(self, group: _Group) -> bool:
        # The lock held. A group leaves _open only with the lock held and
        # is done before the lock is released: not done means still open.
        if group.done:
            return False
        with self._group_lock:
            self._open = None
        return self._commit(group)

    def _commit(self, group: _Group) -> bool:
        """Insert *group*'s rows in one transaction (the lock held), each
        caller's outcome in ``group.errors``. True when the spool's size is
        due a look."""
        db = self._db
        rows = group.rows
        stored = 0
        known = 0  # rows whose outcome is known, from the first
        try:
            if len(rows) == 1:
                try:
                    db.execute(*rows[0])
                    stored = 1
                except Exception as exc:
                    group.errors[0] = exc
                known = 1
            else:
                try:
                    self._in_one_transaction(rows)
                    stored = known = len(rows)
                except Exception:
                    self._roll_back()
                    # Each row again on its own: one row's failure is its own.
                    for index, (statement, row) in enumerate(rows):
                        try:
                            db.execute(statement, row)
                            stored += 1
                        except Exception as exc:
                            group.errors[index] = exc
                        known = index + 1
        except BaseException as exc:  # interrupted (KeyboardInterrupt, SystemExit)
            # Rows not known to be stored are failed; the interrupted thread
            # re-raises its interruption, the others drop theirs as errors.
            self._roll_back()
            failed = sqlite3.OperationalError(f"interrupted ({type(exc).__name__})")
            for index in range(known, len(rows)):
                group.errors.setdefault(index, failed)
            raise
        finally:
            group.done = True
            group.committed.set()
            before = self._inserts
            self._inserts += stored
            counted = self._counted_statement
            self.counted += sum(
                1
                for index, (statement, _) in enumerate(rows)
                if statement is counted and index not in group.errors
            )
        return before // SIZE_CHECK_EVERY != self._inserts // SIZE_CHECK_EVERY

    def _in_one_transaction(self, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
        db = self._db
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

    def _roll_back(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
