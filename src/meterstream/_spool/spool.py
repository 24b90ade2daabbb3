"""The durable spool: a journal and a SQLite database (WAL) between ``record()`` and delivery.

A recorded event is written to this process's journal (:mod:`.journal`,
beside the file: ``<file>.journal/``) before ``record()`` returns, and leaves
it once Stripe accepted it (kept in the ``accepted`` history) or refused it
(kept in ``dead`` with the reason). The SQLite file keeps what needs queries
and what processes share: the history, the dead letters, the uses of
aggregated event names and the events made from them (``pending``, as are
the events a spool of the previous release left: delivered first), the
withdrawn identifiers, and Stripe's reports handled.

An event of ``pending`` leaves the table only when Stripe accepted it
(deleted) or refused it (moved to ``dead`` with the reason). Several
processes may share one file: a process
*claims* the events it sends by writing its owner id and a lease deadline on
them, renews the leases while it still holds them, and the events of a
process that died are claimed again by another once their lease ran out
(sooner, when the owner's pid is known to be dead on this host). An event can
so be sent twice only when a lease ran out under a live sender, and then under
the same identifier, which Stripe's 24-hour dedupe drops.

:class:`Spool` holds the connection and its lock: the record and delivery
paths find every operation here, each idea a module of this package it calls
with them; ``spool.admin`` serves ``meterstream spool``, ``spool.cancellations`` cancel().
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from sqlite3 import Error as SQLiteError
from typing import Any, Callable, Optional, Union

from meterstream._config.parsing import SYNC_MODES
from meterstream._record.events import RawEvent, identifier_prefix
from meterstream._spool import cancellations, forks, journal_rows, owners, queue, withdrawals
from meterstream._spool import history as history_rows
from meterstream._spool.admin import SpoolAdmin
from meterstream._spool.aggregate_store import (
    AGGREGATE_CHUNK,
    INSERT_USE,
    aggregate_in_transaction,
    count_uses,
    oldest_use_end,
)
from meterstream._spool.checkpoint import Checkpointer
from meterstream._spool.group_commit import GroupCommit
from meterstream._spool.journal import DEFAULT_SEGMENT_BYTES, Journal, JournalFull
from meterstream._spool.queue import DeadLetter, SpooledBatch
from meterstream._spool.rows import INSERT_PENDING, encode_dimensions, encode_value
from meterstream._spool.schema import Transaction, open_database
from meterstream._spool.size import disk_bytes, used_bytes
from meterstream.errors import ConfigurationError

__all__ = ["DeadLetter", "Spool", "SpoolFull", "SpooledBatch"]

#: How long a claim holds before another process may take the events over.
DEFAULT_LEASE = 30.0
#: How long accepted events are kept for reconciliation: Stripe's own window.
DEFAULT_HISTORY = 35 * 86400.0
#: Accepted batches logged between two wakes of the checkpoint thread: each
#: wake is a checkpoint (and its fsyncs), which per batch cost delivery more
#: than the batch's own commit.
CHECKPOINT_EVERY = 16


class SpoolFull(Exception):
    """The spool holds ``spool_max_bytes``: the overflow policy decides."""


class Spool:
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
        sync_interval: with ``sync="normal"``, sync the journal this often (seconds; 0: never).
        segment_bytes: each journal segment's size (default: 8 MiB, at most an
            eighth of *max_bytes*).

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
        sync_interval: float = 0.0,
        segment_bytes: Optional[int] = None,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ConfigurationError(f"spool_sync: expected normal or full, got {sync!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.sync = sync
        self.max_bytes = max_bytes
        self.lease = lease
        self.history = history
        self.sync_interval = sync_interval
        self.segment_bytes = segment_bytes or max(
            64 << 10, min(DEFAULT_SEGMENT_BYTES, max_bytes // 8)
        )
        self._clock = clock
        self._repair = repair
        #: Accepted batches this handle logged, and the oldest id of the log it last saw.
        self._logged = 0
        self._log_start = 0
        if not create and not os.path.exists(self.path):
            raise ConfigurationError(f"spool_path: there is no spool at {self.path!r}")
        #: Set when the corrupt file found at open was moved aside (its new name).
        self.moved_aside: Optional[str] = None
        self._open(uses_appended=0)

    def _open(self, uses_appended: int, journal: Optional[Journal] = None) -> None:
        self._lock = threading.Lock()
        self._owner = owners.new_owner()
        self.full = False
        self._db, moved = open_database(self.path, self.sync, self._repair, self._clock)
        self.moved_aside = moved or self.moved_aside
        #: Inserts the record path's rows, in shared transactions when threads meet.
        self._group = GroupCommit(self._db, self._lock, INSERT_USE, uses_appended)
        #: Copies the write-ahead log back into the file, off the record path.
        self._checkpointer = Checkpointer(self.path)
        #: Status, export, replay and purge, with this connection and lock.
        self.admin = SpoolAdmin(self._db, self._lock, self._clock, self.path)
        self.cancellations = cancellations.SpoolCancellations(
            self._db,
            self._lock,
            self._clock,
            withdraw=self.withdraw,
            pending_state=self.pending_state,
        )
        with self._lock:
            owners.register(self._db, self._owner, self._clock())
        #: Other processes' withdrawal requests: made, answered, and honoured.
        self._desk = withdrawals.RequestDesk(
            self._db, self._lock, self._clock, self._remember_withdrawn
        )
        #: This process's journal: where record() writes.
        self.journal = journal or Journal(
            self.path + ".journal",
            segment_bytes=self.segment_bytes,
            sync=self.sync,
            sync_interval=self.sync_interval,
            max_bytes=self.max_bytes,
            withdrawn=self._withdrawn_identifiers,
            # Through this handle: a forked child keeps the journal, not the desk.
            requested=lambda: self._desk.requested(),
            confirm_skip=lambda identifier: self._desk.confirm_skip(identifier),
        )
        if journal is None:
            # What a process that died (or exited) left: delivered from here on.
            self.journal.adopt_orphans()
        # A fork waits until no thread of this spool is inside SQLite or the journal.
        forks.track(self)
        self.reap()
        self._update_full()
        self._desk.start(self.journal)

    def _write(self) -> Transaction:
        return Transaction(self._db)

    # -- the record path --------------------------------------------------------------

    def append(self, event: RawEvent) -> None:
        """Write one recorded event to the journal: safe from a crash of this
        process when this returns (with ``sync="full"``, from a power loss).

        Raises:
            SpoolFull: the spool holds ``max_bytes``.
            JournalError: the journal could not take it (a full disk).
        """
        try:
            self.journal.append(event)
        except JournalFull:
            raise SpoolFull(self.path) from None

    def append_row(self, event: RawEvent) -> None:
        """Insert one event as a row of the SQLite file's ``pending`` table
        (group commit), where aggregated events and a previous release's wait:
        delivered after the journal's, claimed by any process.

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
        if self._group.insert(INSERT_PENDING, row):
            self._update_full()

    # -- uses aggregated in the spool (aggregate with spool_path) -------------------------

    def append_use(
        self,
        event_name: str,
        customer: str,
        value: Union[int, str],
        window_start: float,
        window_end: float,
        dimensions: Optional[str],
    ) -> None:
        """Insert one use of an aggregated event name, durably (as :meth:`append`).

        *value* is an int or its exact decimal text, *dimensions* their
        canonical JSON text; :meth:`aggregate_due` makes the events.

        Raises:
            SpoolFull: the spool holds ``max_bytes``.
            sqlite3.Error: the insert failed (disk full, I/O error, locked too long).
        """
        if self.full:
            raise SpoolFull(self.path)
        row = (event_name, customer, value, window_start, window_end, dimensions)
        if self._group.insert(INSERT_USE, row):
            self._update_full()

    @property
    def uses_appended(self) -> int:
        """Uses this handle inserted (:meth:`append_use`), for ``stats()``."""
        return self._group.counted

    def aggregate_due(
        self, now: float, *, force: bool = False, chunk: int = AGGREGATE_CHUNK
    ) -> int:
        """Sum the uses of every window ended by *now* (every window, when
        *force*) into pending events; returns how many were made.

        Read, summed exactly, inserted as events with identifiers fixed now,
        and deleted before one commit: a crash before it leaves the uses, a
        crash after it events to deliver. ``BEGIN IMMEDIATE`` makes two
        processes take turns (the second finds nothing left); past *chunk*
        uses, several transactions let records in between.
        """
        made, more = 0, True
        while more:
            with self._lock, self._write():
                count, more = aggregate_in_transaction(self._db, now, force, chunk)
            made += count
        return made

    def uses_count(self) -> int:
        """Uses waiting in the spool to be aggregated (every process's)."""
        with self._lock:
            return count_uses(self._db)

    def oldest_use_end(self) -> Optional[float]:
        """When the oldest waiting use's window ends (None: no use waits): a
        cheap look at the first row before taking the write lock to aggregate."""
        with self._lock:
            return oldest_use_end(self._db)

    # -- delivery ---------------------------------------------------------------------

    def claim(self, limit: int) -> SpooledBatch:
        """Claim up to *limit* of the oldest events nobody holds and that are due."""
        now = self._clock()
        with self._lock, self._write():
            return queue.claim(self._db, self._owner, now, now + self.lease, limit)

    def ack(self, seqs: Iterable[int]) -> int:
        """Stripe accepted these events: they leave the pending table.

        With a history, they are kept in ``accepted`` (once per identifier,
        as Stripe counts them) for reconciliation and late error reports.
        """
        now = self._clock()
        with self._lock, self._write():
            deleted = queue.ack(self._db, seqs, now, keep=self.history > 0)
        self._checkpointer.wake()
        return deleted

    def accepted_events(self, events: list[RawEvent]) -> None:
        """Stripe accepted these journal events: into the history (with one),
        then past the journal's cursor. A crash between the two sends them
        again, under their identifiers: Stripe drops the repeat.

        The batch is logged, one row in one statement (:func:`.history.log_accepted`);
        past :data:`.history.LOG_BOUND` logged batches, the log is caught up."""
        if self.history > 0 and events:
            now = self._clock()
            blob = history_rows.batch_blob(events)  # outside the lock the other senders wait on
            with self._lock:
                last = history_rows.log_accepted(self._db, events, now, blob)
                # The oldest logged batch is looked up only when the one last
                # seen (ids only grow) is that far behind.
                if last - self._log_start >= history_rows.LOG_BOUND:
                    self._log_start = history_rows.log_start(self._db)
                    if last - self._log_start >= history_rows.LOG_BOUND:
                        with self._write():
                            history_rows.catch_up(self._db)
                        self._log_start = last + 1
                self._logged += 1
                wake = self._logged % CHECKPOINT_EVERY == 0
            if wake:
                self._checkpointer.wake()  # the write-ahead log is copied back off this thread
        self.journal.settle(events)

    def catch_up_history(self) -> int:
        """Move the accepted batches logged so far (every process's) into the
        history's table; returns how many events were moved. Delivery calls
        this when it is idle; every reader of the history does it first."""
        with self._lock:
            moved = history_rows.caught_up(self._db)
        if moved or self._logged % CHECKPOINT_EVERY:
            self._checkpointer.wake()
        return moved

    def bury_events(
        self, events: list[RawEvent], reason: str, code: Optional[str], message: Optional[str]
    ) -> int:
        """Stripe refused these journal events: into the dead letters, then past the cursor."""
        now = self._clock()
        with self._lock, self._write():
            count = journal_rows.bury_events(
                self._db, ((e, 1, reason, code, message) for e in events), now
            )
        self.journal.settle(events)
        return count

    def withdraw(self, identifier: str, standing: bool = False) -> Optional[str]:
        """Withdraw the event *identifier* if it was not sent yet.

        Returns ``"withdrawn"`` (it will never be sent, by this process or
        one that takes over its journal), ``"in_flight"`` (being sent: it may
        be arriving at Stripe now) or None (sent already, or not here).

        Looks at this process's journal, then at the journals of processes
        that died (adopted here first, so an event a dead process recorded
        can be withdrawn too), then at the SQLite file's events (aggregated
        ones, a previous release's), then at the segments of the other live
        processes: one that holds it is asked (:mod:`.withdrawals`) and its
        answer awaited, at most :data:`~.withdrawals.ASK_DEADLINE` seconds; no
        answer by then is ``"in_flight"`` (it may still be sent). *standing*
        (a destination that cannot cancel a delivered event): the request
        stays, for its holder to withdraw the event if it comes back to wait.
        """
        outcome = self.journal.withdraw(identifier, self._remember_withdrawn)
        if outcome is None and self.journal.adopt_orphans():
            outcome = self.journal.withdraw(identifier, self._remember_withdrawn)
        if outcome is not None:
            return outcome
        now = self._clock()
        with self._lock, self._write():
            outcome = cancellations.withdraw(self._db, identifier, now)
            if outcome == "withdrawn":
                journal_rows.withdraw(self._db, identifier, now)
        if outcome is None and self.held_by_another(identifier):
            outcome = self._desk.ask(identifier, standing, self.journal, self.held_by_another)
        return outcome

    def held_by_another(self, identifier: str) -> bool:
        """Whether another process's journal holds the event *identifier*, not
        yet in the accepted history: waiting there, or on its way."""
        with self._lock:
            if cancellations.accepted_event(self._db, identifier) is not None:
                return False
        return self.journal.held_elsewhere(identifier)

    def pending_state(self, identifier: str) -> Optional[str]:
        """Whether the event *identifier* waits to be sent, changing nothing:
        ``"pending"``, ``"in_flight"`` (being sent) or None, looked for where
        :meth:`withdraw` looks (dead processes' journals are adopted first).
        Held by another live process it is ``"pending"``: waiting or on its
        way there, which that process alone knows (:meth:`withdraw` asks it)."""
        state = self.journal.pending_state(identifier)
        if state is None and self.journal.adopt_orphans():
            state = self.journal.pending_state(identifier)
        if state is not None:
            return state
        with self._lock:
            state = cancellations.pending_state(self._db, identifier, self._clock())
        if state is None and self.held_by_another(identifier):
            return "pending"
        return state

    def _remember_withdrawn(self, identifier: str) -> None:
        now = self._clock()
        with self._lock, self._write():
            journal_rows.withdraw(self._db, identifier, now)
            withdrawals.claim_for_skip(self._db, identifier, now)  # asked for too: answered

    def _withdrawn_identifiers(self) -> set[str]:
        with self._lock:
            return journal_rows.withdrawn(self._db)

    def release(self, seqs: Iterable[int], delay: float = 0.0) -> None:
        """Give claimed events back to wait *delay* seconds (a batch out of retry time)."""
        not_before = self._clock() + delay
        with self._lock, self._write():
            queue.release(self._db, seqs, not_before)

    def bury(self, letters: Iterable[DeadLetter]) -> int:
        """Move events to the dead-letter table with their reasons."""
        now = self._clock()
        with self._lock, self._write():
            return queue.bury(self._db, letters, now)

    def evict_oldest(self, count: int = 1) -> list[RawEvent]:
        """Delete the *count* oldest events nobody holds (``overflow="drop_oldest"``);
        returns them, for ``on_delivery_error``."""
        evicted = self.journal.evict_oldest()
        if evicted:
            return evicted
        now = self._clock()
        with self._lock, self._write():
            return queue.evict_oldest(self._db, now, count)

    def pending_count(self) -> int:
        """Events waiting: this process's journal (and what it adopted), and the SQLite file's."""
        with self._lock:
            rows = queue.pending_upto(self._db, None)
        return rows + self.journal.pending()

    def sqlite_pending(self) -> int:
        """Events waiting in the SQLite file (aggregated ones, the previous release's)."""
        with self._lock:
            return queue.pending_upto(self._db, None)

    def last_seq(self) -> int:
        """A point every event recorded before this call is at or before (0: nothing).

        Two numbers in one int: the journal's newest frame (this process's
        frames are numbered in the order written) above 64 bits, and the
        newest row of ``pending`` below (row numbers only grow while rows wait).
        """
        with self._lock:
            row = queue.last_seq(self._db)
        return (self.journal.flush_point() << 64) | row

    def pending_upto(self, seq: int) -> int:
        """How many events up to the point *seq* (:meth:`last_seq`) still wait."""
        with self._lock:
            rows = queue.pending_upto(self._db, seq & ((1 << 64) - 1))
        return rows + self.journal.pending_upto(seq >> 64)

    # -- the accepted history, and Stripe's reports handled ---------------------------

    def prune_history(self, keep_bytes: Optional[int] = None) -> int:
        """Forget accepted events older than the history; with *keep_bytes*,
        also the oldest ones until the spool is below that size."""
        now = self._clock()
        with self._lock, self._write():
            pruned = history_rows.prune(
                self._db, now - self.history, now - max(self.history, history_rows.HANDLED_KEPT)
            )
        if self.history > 0 and self.journal is not None:
            with self._lock, self._write():
                journal_rows.prune_withdrawn(self._db, now - journal_rows.WITHDRAWN_KEPT)
                withdrawals.prune(self._db, now - journal_rows.WITHDRAWN_KEPT)
        while keep_bytes is not None and self.size_bytes() > keep_bytes:
            with self._lock, self._write():
                gone = history_rows.prune_oldest(self._db)
            if not gone:
                break
            pruned += gone
        return pruned

    def accepted_between(
        self, start: float, end: float, event_name: Optional[str] = None
    ) -> list[tuple[str, str, Any, float, float]]:
        """Accepted events with ``start <= timestamp < end``:
        ``(event_name, customer, value, timestamp, accepted_at)``, oldest first."""
        with self._lock:
            return history_rows.accepted_between(self._db, start, end, event_name)

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
        with self._lock, self._write():
            found = history_rows.bury_accepted(self._db, wanted, reason, code, message, now)
            seqs = history_rows.pending_seqs(self._db, wanted)
        return found + self.bury(DeadLetter(seq, reason, code, message) for seq in seqs)

    def claim_event(self, event_id: str) -> bool:
        """Take a Stripe event (an error report) to handle: False when any process
        has taken it before. One statement, so two processes never both get it."""
        with self._lock, self._write():
            return history_rows.claim_event(self._db, event_id, self._clock())

    def release_event(self, event_id: str) -> None:
        """Handling a claimed event failed: let a later delivery of it be handled."""
        with self._lock, self._write():
            history_rows.release_event(self._db, event_id)

    def was_handled(self, event_id: str) -> bool:
        """Whether a Stripe event was taken to handle already, by any process."""
        with self._lock:
            return history_rows.was_handled(self._db, event_id)

    def known_dead(self, identifiers: Iterable[str]) -> set[str]:
        """Which of *identifiers* are already dead letters (a report seen twice)."""
        with self._lock:
            return history_rows.known_dead(self._db, identifiers)

    # -- owners and leases --------------------------------------------------------------

    def renew(self) -> None:
        """Extend the leases of everything this process holds, and say it is alive."""
        now = self._clock()
        with self._lock, self._write():
            owners.renew(self._db, self._owner, now, now + self.lease)

    def reap(self) -> int:
        """Free at once the claims of processes known to be dead on this host.

        Returns how many events were freed.
        """
        with self._lock:
            dead = owners.dead_owners(self._db, self._owner)
        if not dead:
            return 0
        with self._lock, self._write():
            return sum(owners.leave(self._db, owner) for owner in dead)

    # -- size -------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes the spool's data uses: the database's pages in use.

        What ``spool_max_bytes`` bounds, with the journal's segments (:meth:`journal_bytes`).
        The write-ahead log comes on top, up to 64 MiB (``journal_size_limit``)
        between checkpoints.
        """
        with self._lock:
            return used_bytes(self._db)

    def journal_bytes(self) -> int:
        """Bytes of the journal's segments on disk (every process's)."""
        return self.journal.bytes()

    def disk_bytes(self) -> int:
        """Bytes on disk: the database file, its write-ahead log, and the journal."""
        return disk_bytes(self.path) + self.journal.bytes()

    def refresh_full(self) -> None:
        """Look at the spool's size now (else done every few hundred appends)."""
        self._update_full()

    def _update_full(self) -> None:
        # Called every few hundred inserts, and after each ack: the
        # write-ahead log has grown by a few hundred pages since the last time.
        self._checkpointer.wake()
        try:
            self.full = self.size_bytes() + self.journal.bytes() >= self.max_bytes
        except SQLiteError:
            pass

    # -- lifecycle ----------------------------------------------------------------------

    def fork_locks(self) -> list[Any]:
        """The locks a fork holds (:mod:`.forks`): the journal's, then the
        connection's (a withdrawal takes the connection's inside the journal's)."""
        return [*self.journal.fork_locks(), self._lock, self._group.fork_lock()]

    def after_fork_in_child(self) -> None:
        """A forked child gets its own connection and owner id; the parent's claims stay its."""
        # The parent's connection (and checkpoint thread) are not ours, nor its journal.
        journal = self.journal
        journal.after_fork_in_child()
        self._open(uses_appended=self.uses_appended, journal=journal)

    def close(self) -> None:
        self._desk.stop()
        forks.untrack(self)
        self.journal.close()
        self._checkpointer.close()
        with self._lock:
            try:
                owners.leave(self._db, self._owner)
            except SQLiteError:
                pass
            self._db.close()
