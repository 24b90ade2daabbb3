"""The journal: where ``record()`` with a spool writes, before anything else.

Each process writes its own segments (:mod:`.segment`), one at a time, a
frame per event (:mod:`.frames`); the threads of a process share its current
segment under a lock of that process only. An event is in the kernel's page
cache, safe from a crash of its process, when :meth:`Journal.append`
returns; with ``sync="full"`` it is on the disk, safe from a power loss (one
``fdatasync`` shared by the threads that wrote meanwhile: group commit); with
``sync_interval`` the disk is at most that many seconds behind.

Delivery reads the frames back in order (:meth:`take`) and says how each
event settled (:meth:`settle`: accepted, refused or withdrawn, or
:meth:`give_back` to wait). A segment's cursor moves past a frame only when
it and every frame before it have settled; a segment is deleted only when its
writer has moved on and its cursor is past its last frame. The segments of
a process that died (its ``flock`` gone) are adopted by the next process that
looks (:meth:`adopt_orphans`): it delivers them from their cursor, in order,
with their identifiers and timestamps, drops a torn tail, and skips frames
that do not check, counting them and moving the segment aside when done.
"""

from __future__ import annotations

import errno
import marshal
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterable
from typing import Any, Callable, Optional

from meterstream._internal import logger
from meterstream._record.events import RawEvent, identifier_prefix
from meterstream._spool import forks
from meterstream._spool import segment as segments
from meterstream._spool.frames import (
    FRAME_HEADER,
    MAX_PAYLOAD,
    ScanReport,
    complete,
    decode_event,
    encode_event,
    frame_size,
    holds,
    needles,
    scan,
)
from meterstream._spool.mutex import Mutex
from meterstream._spool.segment import DirectoryLock, Segment, SegmentError

__all__ = ["DEFAULT_SEGMENT_BYTES", "Journal", "JournalError", "JournalFull", "inspect"]

#: Each segment's size: preallocated when the segment is made.
DEFAULT_SEGMENT_BYTES = 8 << 20
#: The longest a group commit's leader waits for the other recording threads (seconds).
LINGER_MAX = 0.005
#: Packers of a whole frame (header and payload) by payload length: one store per record.
#: Payloads up to this long get a packer kept in _PACKERS; longer ones one made each time.
_PACKED_UP_TO = 4096
#: (A list, indexed by the length: a third of a dict's get and a None test.)
_PACKERS: list[Optional[Callable[..., None]]] = [None] * (_PACKED_UP_TO + 1)
_dumps = marshal.dumps
_loads = marshal.loads
_CURSOR = struct.Struct("<QQ")
_crc = zlib.crc32


class JournalError(Exception):
    """The journal could not take an event (its segment could not be made)."""

    def __init__(self, message: str, reason: str = "spool_error") -> None:
        super().__init__(message)
        #: ``disk_full`` or ``spool_error``: what ``stats()`` counts the drop under.
        self.reason = reason


class JournalFull(Exception):
    """The journal's segments hold the bytes they may: the overflow policy decides."""


class _Source:
    """A segment delivery reads: where it is, and what was read and not settled."""

    __slots__ = (
        "after",
        "corrupt",
        "exhausted",
        "known",
        "own",
        "pos",
        "read",
        "seg",
        "torn",
        "window",
    )

    def __init__(self, seg: Segment, own: bool) -> None:
        self.seg = seg
        self.own = own
        cursor_seq, cursor_off = seg.cursor
        self.after = cursor_seq
        self.pos = cursor_off
        #: Read and not settled, in read order: seq -> [end offset, settled, this source]
        #: (the entry :attr:`Journal._taken` holds for the event).
        self.window: dict[int, list[Any]] = {}
        self.read = 0
        #: Frames known to be in the segment past the cursor (adopted ones: counted at adoption).
        self.known = 0
        self.corrupt = 0
        self.torn = False
        #: The last read reached the end of what there is (for now, in a segment being written).
        self.exhausted = False

    def limit(self) -> int:
        return self.seg.end if self.own else self.seg.size


class Journal:
    """One process's journal in *directory*.

    Args:
        directory: where the segments are (created when absent).
        segment_bytes: each segment's size.
        sync: ``"normal"`` or ``"full"`` (see the module).
        sync_interval: with ``"normal"``, sync the current segment this often
            (seconds; 0: never).
        max_bytes: past this many bytes of segments, :meth:`append` raises
            :class:`JournalFull`.
        withdrawn: the identifiers withdrawn for good (read when adopting).
        requested: the identifiers another process asked to withdraw and had
            no answer for (read when adopting: their holder may have died).
        confirm_skip: asked before an adopted frame whose identifier *requested*
            named is skipped: True to skip it (the request answered now, in
            the same transaction), False to deliver it (the request was revoked).
    """

    def __init__(
        self,
        directory: str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        sync: str = "normal",
        sync_interval: float = 0.0,
        max_bytes: int = 1 << 30,
        withdrawn: Callable[[], set[str]] = set,
        requested: Callable[[], set[str]] = set,
        confirm_skip: Optional[Callable[[str], bool]] = None,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.sync = sync
        self.sync_interval = sync_interval
        self.max_bytes = max_bytes
        self._withdrawn_loader = withdrawn
        self._requested_loader = requested
        self._confirm_skip = confirm_skip
        os_makedirs(directory)
        self.corrupt_frames = 0
        self.torn_tails = 0
        self.moved_aside: list[str] = []
        self._start()

    def _start(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:
            #: The writers' lock: a Mutex (see .mutex), cheaper to take than threading.Lock.
            self._lock = Mutex()
        elif lock.locked() and not forks.holds(lock):
            # A forked child: the lock a fork passed over (forks.FORK_PATIENCE)
            # is held by a thread the child does not have. The same lock
            # object stays, for the writer() functions bound to it. (One the
            # fork holds, the fork's own handler gives back.)
            lock.release()
        self._read_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        sync_state = threading.Lock()
        self._sync_cond = threading.Condition(sync_state)
        #: The group commit's leader waits on this one (the same lock) for the others.
        self._lead_cond = threading.Condition(sync_state)
        self._syncing = False
        self._seg: Optional[Segment] = None
        self._next_seq = 1
        self._sources: list[_Source] = []
        #: Events taken and not settled: id(event) -> its window entry.
        self._taken: dict[int, list[Any]] = {}
        self._retry: list[tuple[float, RawEvent]] = []
        self._withdrawn: set[str] = set()
        #: Asked for by another process with no answer yet (adopted frames only).
        self._requested: set[str] = set()
        self._synced: tuple[Optional[Segment], int] = (None, 0)
        self._full_sync = self.sync == "full"
        #: fdatasyncs made for spool_sync="full" (each covers every frame written before it).
        self.group_syncs = 0
        self._sync_users: dict[int, float] = {}
        self._arrived = 0
        self._last_sync = 0.0
        self._settled_own = 0
        #: The newest own frame read (own frames are numbered in the order written).
        self._own_read = 0
        self._closed = False
        self._ticker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        if self.sync == "normal" and self.sync_interval > 0:
            self._ticker = threading.Thread(
                target=self._sync_every, name="meterstream-journal-sync", daemon=True
            )
            self._ticker.start()

    # -- the record path --------------------------------------------------------------

    def append(self, event: RawEvent) -> None:
        """Write one event; safe from a crash of this process when this returns.

        Raises:
            JournalFull: the journal holds ``max_bytes`` and a new segment is due.
            JournalError: a new segment could not be made (a full disk).
            ValueError: the event cannot be written (too large, an unknown type).
        """
        value = event[2]
        if type(value) is int or type(value) is float:
            payload = _dumps(event, 4)  # type: ignore[arg-type]  # the recorded tuple as it is
        else:
            payload = encode_event(event)
        length = len(payload)
        # The frame in one store: header and payload by a packer made once per length.
        pack = (_PACKERS[length] if length <= _PACKED_UP_TO else None) or _packer(length)
        size = 16 + ((length + 7) & ~7)
        lock = self._lock
        lock.take()  # not "with": its __exit__ call costs ~100 ns more a record
        try:
            seg = self._seg
            if seg is None or seg.end + size > seg.size:
                seg = self._roll(length)
            offset = seg.end
            seq = self._next_seq
            self._next_seq = seq + 1
            crc = _crc(payload, seq)  # seeded with frames.seed(length, seq): seq's low 32 bits
            pack(seg.mm, offset, length, crc, seq, payload)
            seg.end = offset + size
        finally:
            lock.give(None)
        if self._full_sync:
            self._sync_upto(seg, offset + size)

    def writer(
        self, slow: Callable[[RawEvent], bool], wake: Any, batch_size: int
    ) -> Callable[[RawEvent], bool]:
        """The record path's write: :meth:`append` without a call, a raise or a check
        the common event does not need, and the early wake of delivery.

        The function returned writes an event whose value marshal keeps as it
        is (an int, a float) into the current segment, and returns True (a
        generated identifier is kept as its number: the segment's header has
        the prefix that completes it, :func:`.frames.complete`). Any
        other event (a Decimal value), one the current segment has no room
        for (a roll: with ``max_bytes``, the overflow policy), and anything
        that raises go to *slow*, which calls :meth:`append`; with
        ``sync="full"`` every event does (the ``fdatasync`` is its cost).
        Once *batch_size* of this process's frames wait unread it sets
        *wake*, looked at every power of two up to *batch_size* frames (one
        look a frame costs a tenth of the write), so a full batch waits for
        fewer than twice *batch_size* frames. It stays valid for the
        journal's life, across a fork (see :meth:`_start`).
        """
        if self._full_sync:
            return slow
        acquire = self._lock.take
        give = self._lock.give
        dumps: Callable[[Any, int], bytes] = _dumps  # the recorded tuple as it is
        crc = _crc
        packers = _PACKERS
        every = (1 << (max(1, batch_size).bit_length() - 1)) - 1
        journal = self

        def write(event: RawEvent) -> bool:
            try:
                # The tuple as it is: a generated identifier as its number, which
                # the segment's prefix completes; a Decimal value raises (slow path).
                payload = dumps(event, 4)
                length = len(payload)
                pack = packers[length]  # past _PACKED_UP_TO: IndexError, the slow path
                if pack is None:
                    pack = _packer(length)
                size = (length + 23) & -8  # the header, and the payload padded to 8
                seq = 0
                acquire()
                try:
                    # None before the first segment: AttributeError, the slow path.
                    seg: Segment = journal._seg  # type: ignore[assignment]
                    offset = seg.end
                    if offset + size <= seg.size:
                        seq = journal._next_seq
                        # Seeded with frames.seed(length, seq): crc32 takes seq's low 32 bits.
                        pack(seg.mm, offset, length, crc(payload, seq), seq, payload)
                        journal._next_seq = seq + 1
                        seg.end = offset + size
                finally:
                    give(None)
            except Exception:
                return slow(event)
            if not seq:
                return slow(event)
            if not seq & every and seq - journal._own_read >= batch_size and not wake._flag:
                wake.set()
            return True

        return write

    @property
    def written(self) -> int:
        """Events this process wrote (its frames are numbered 1, 2, ... in the order written)."""
        return self._next_seq - 1

    def unread(self) -> int:
        """This process's frames not read yet (a cheap count: no lock); 0 once closed
        (they wait in the segments, for the next process)."""
        if self._closed:
            return 0
        return max(0, self._next_seq - 1 - self._own_read)

    def _roll(self, length: int) -> Segment:
        """A new segment (the lock held): the current one is full, or there is none."""
        if length > MAX_PAYLOAD or frame_size(length) > self.segment_bytes - segments.HEADER_SIZE:
            raise ValueError(f"an event of {length} bytes is larger than a journal segment holds")
        if self._closed:
            raise JournalError("the spool is closed")
        if self.bytes() + self.segment_bytes > self.max_bytes:
            raise JournalFull(self.directory)
        try:
            new = segments.create(
                self.directory,
                self._next_seq,
                self.segment_bytes,
                # What this process's generated identifiers begin with now: the
                # numbers written into the segment are completed with it.
                identifier_prefix(),
                written=self.sync == "full",
            )
        except SegmentError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise JournalError(str(exc), "disk_full" if full else "spool_error") from None
        old = self._seg
        if old is not None:
            if self.sync != "normal" or self.sync_interval > 0:
                with self._sync_lock:
                    old.sync()
            old.seal()
        self._seg = new
        self._sources.append(_Source(new, own=True))
        return new

    def _sync_upto(self, seg: Segment, end: int) -> None:
        """Group commit: one fdatasync covers every frame written before it started.

        One thread syncs at a time, outside the lock; the threads that wrote
        meanwhile wait for it to end and return at once if it covered them,
        else one of them (the leader) starts the next sync for all of them.
        Left at that, the threads split into two halves taking turns (those
        a sync releases write again while the next one runs, and wait for the
        one after), so a sync covers half of them. The leader therefore
        waits, before it syncs, for the threads that recorded with a sync in
        the last second to have written again, at most half the last sync's
        time (:data:`LINGER_MAX` at most): a sync then covers them all.
        """
        cond = self._sync_cond
        me = threading.get_ident()
        with cond:
            self._sync_users[me] = time.monotonic()
            self._arrived += 1
            if self._syncing and self._arrived >= len(self._sync_users):
                self._lead_cond.notify()  # a leader waiting for the others: all here
            while True:
                synced_seg, synced_end = self._synced
                if seg is not self._seg or (synced_seg is seg and synced_end >= end):
                    return  # synced at the roll, or by a sync that began after the write
                if not self._syncing:
                    break
                cond.wait()
            self._syncing = True  # leader from here: no other thread starts a sync
            now = time.monotonic()
            users = self._sync_users
            if len(users) > 1:
                for ident, seen in list(users.items()):
                    if now - seen > 1.0:
                        del users[ident]
            linger = min(self._last_sync / 2, LINGER_MAX)
            deadline = now + linger
            while self._arrived < len(users):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lead_cond.wait(left)
            self._arrived = 0
            target = seg.end
        began = time.monotonic()
        try:
            with self._sync_lock:
                seg.sync()
        finally:
            with cond:
                self._syncing = False
                self.group_syncs += 1
                self._last_sync = time.monotonic() - began
                if self._synced[0] is not seg or self._synced[1] < target:
                    self._synced = (seg, target)
                cond.notify_all()

    def _sync_every(self) -> None:
        while not self._stop.wait(self.sync_interval):
            self.sync_now()

    def sync_now(self) -> None:
        """Write the current segment to the disk (``spool_sync_interval``'s tick, and close)."""
        with self._sync_lock:
            seg = self._seg
            if seg is not None and self._synced != (seg, seg.end):
                target = seg.end
                try:
                    seg.sync()
                except (OSError, ValueError):
                    return
                self._synced = (seg, target)

    # -- delivery ---------------------------------------------------------------------

    def take(self, limit: int, now: Optional[float] = None) -> list[RawEvent]:
        """Up to *limit* events to send, oldest first: those given back and due, then new ones."""
        out: list[RawEvent] = []
        with self._read_lock:
            if self._retry:
                now = time.monotonic() if now is None else now
                due = [item for item in self._retry if item[0] <= now][:limit]
                if due:
                    ids = {id(item) for item in due}
                    self._retry = [item for item in self._retry if id(item) not in ids]
                    out.extend(event for _, event in due)
            for source in list(self._sources):
                if len(out) >= limit:
                    break
                self._read(source, limit, out)
        return out

    def _read(self, source: _Source, limit: int, out: list[RawEvent]) -> None:
        """Read *source*'s frames into *out* until it holds *limit* events."""
        if source.own:
            self._read_own(source, limit, out)
            return
        report = ScanReport()
        seg = source.seg
        for frame in scan(seg.mm, source.pos, source.limit(), source.after, report, seg.version):
            source.after = frame.seq
            source.pos = frame.end
            source.read += 1
            if source.own:
                self._own_read = frame.seq
            try:
                event = decode_event(frame.payload, seg.prefix)
            except ValueError:
                report.corrupt += 1
                source.window[frame.seq] = [frame.end, True, source]
                self._count_settled(source)
                continue
            if event[4] in self._withdrawn or (
                self._requested and event[4] in self._requested and self._skips(event[4])
            ):
                self._withdrawn.discard(event[4])
                source.window[frame.seq] = [frame.end, True, source]
                self._count_settled(source)
                continue
            entry = [frame.end, False, source]
            source.window[frame.seq] = entry
            self._taken[id(event)] = entry
            out.append(event)
            if len(out) >= limit:
                source.exhausted = False
                break
        else:
            source.pos = report.end
            source.exhausted = True
        if report.corrupt:
            source.corrupt += report.corrupt
            self.corrupt_frames += report.corrupt
            logger.error(
                "the spool's journal segment %s has %d record(s) that do not check "
                "(%d bytes skipped): the rest is delivered, the segment kept aside",
                seg.path,
                report.corrupt,
                report.corrupt_bytes,
            )
        if report.torn and not source.torn:
            source.torn = True
            self.torn_tails += 1
        self._advance(source)

    def _skips(self, identifier: str) -> bool:
        """Whether an adopted frame named by *requested* is skipped (see ``confirm_skip``)."""
        self._requested.discard(identifier)
        confirm = self._confirm_skip
        if confirm is None:
            return True
        try:
            return confirm(identifier)
        except Exception as exc:  # the SQLite file unreadable: skip, it was asked for
            logger.error("the spool could not record withdrawing %r: %s", identifier, exc)
            return True

    def _read_own(self, source: _Source, limit: int, out: list[RawEvent]) -> None:
        """Read frames this process wrote: they check by construction (one
        writer, in memory), so the reader skips the checksum and the search."""
        seg = source.seg
        mm = seg.mm
        pos = source.pos
        end = seg.end
        window = source.window
        taken = self._taken
        withdrawn = self._withdrawn
        unpack = FRAME_HEADER.unpack_from
        prefix = seg.prefix
        room = limit - len(out)
        seq = self._own_read
        while pos < end and room > 0:
            length, _, seq = unpack(mm, pos)
            start = pos + 16
            pos = start + ((length + 7) & ~7)
            event = _loads(mm[start : start + length])
            if type(event[4]) is not str or type(event[2]) is tuple or type(event[5]) is tuple:
                event = complete(event, prefix)
            if withdrawn and event[4] in withdrawn:
                withdrawn.discard(event[4])
                window[seq] = [pos, True, source]
                self._settled_own += 1
                continue
            window[seq] = taken[id(event)] = [pos, False, source]
            out.append(event)
            room -= 1
        self._own_read = seq
        if pos > source.pos:
            source.after = seq
        source.pos = pos
        source.exhausted = pos >= end
        self._advance(source)

    def settle(self, events: Iterable[RawEvent]) -> int:
        """These events are done with (accepted, or refused and kept as dead letters).

        Returns how many were this journal's.
        """
        count = 0
        own = 0
        with self._read_lock:
            touched: dict[int, _Source] = {}
            pop = self._taken.pop
            last: Optional[_Source] = None
            for event in events:
                entry = pop(id(event), None)
                if entry is None:
                    continue
                source = entry[2]
                if not entry[1]:
                    entry[1] = True
                    if source.own:
                        own += 1
                    else:
                        source.known -= 1
                if source is not last:
                    touched[id(source)] = last = source
                count += 1
            self._settled_own += own
            for source in touched.values():
                self._advance(source)
        return count

    def give_back(self, events: Iterable[RawEvent], delay: float) -> None:
        """These events wait *delay* seconds before they are taken again."""
        due = time.monotonic() + delay
        with self._read_lock:
            for event in events:
                if id(event) in self._taken:
                    self._retry.append((due, event))

    def owns(self, event: RawEvent) -> bool:
        """Whether *event* was taken from this journal (not yet settled)."""
        return id(event) in self._taken

    def owned(self, events: Iterable[RawEvent]) -> list[RawEvent]:
        """Those of *events* taken from this journal (not yet settled), in order."""
        taken = self._taken
        return [event for event in events if id(event) in taken]

    def _count_settled(self, source: _Source) -> None:
        if source.own:
            self._settled_own += 1
        else:
            source.known -= 1

    def _advance(self, source: _Source) -> None:
        """Move *source*'s cursor past its settled frames; delete it when all is done."""
        window = source.window
        moved = False
        cursor: Optional[tuple[int, int]] = None
        while window:
            seq = next(iter(window))
            entry = window[seq]
            if not entry[1]:
                break
            del window[seq]
            cursor = (seq, entry[0])
            moved = True
        if moved and cursor is not None:
            source.seg.set_cursor(*cursor)
        if window or not source.exhausted:
            return
        if source.own and not (source.seg.sealed and source.pos >= source.seg.end):
            return
        self._finish(source)

    def _finish(self, source: _Source) -> None:
        """Everything in *source* settled and its writer is done: delete it (or keep it aside)."""
        try:
            self._sources.remove(source)
        except ValueError:
            return
        seg = source.seg
        try:
            if source.corrupt:
                self.moved_aside.append(seg.move_aside())
            else:
                with self._sync_lock:
                    seg.delete()
        except OSError as exc:
            logger.error("the spool could not remove the journal segment %s: %s", seg.path, exc)

    def pending_state(self, identifier: str) -> Optional[str]:
        """Where *identifier* stands in this journal, changing nothing:
        ``"pending"`` (waits to be sent), ``"in_flight"`` (taken to be sent,
        not settled) or None (not here), as :meth:`withdraw` finds it."""
        return self._find(identifier, None)

    def withdraw(self, identifier: str, durable: Callable[[str], None]) -> Optional[str]:
        """Withdraw the pending event *identifier* before it is sent.

        Looks at what this journal holds (this process's segments and those
        it adopted) and has not sent: when found, *durable* records the
        withdrawal (so that no later process sends it) and this returns
        ``"withdrawn"``. ``"in_flight"``: the event was taken to be sent and
        has not settled (it may be arriving at Stripe now). None: not here
        (sent already, withdrawn before, or another process's).
        """
        return self._find(identifier, durable)

    def _find(self, identifier: str, durable: Optional[Callable[[str], None]]) -> Optional[str]:
        """:meth:`withdraw` when *durable* is given, :meth:`pending_state` when None."""
        with self._read_lock:
            if identifier in self._withdrawn:
                return None
            for index, (_, event) in enumerate(self._retry):
                if event[4] == identifier:
                    if durable is None:
                        return "pending"
                    # Given back after a failed attempt: it waits, so it can go.
                    durable(identifier)
                    del self._retry[index]
                    self._settle_taken(event)
                    return "withdrawn"
            for source in self._sources:
                seg = source.seg
                end = source.limit()
                found = needles(identifier, seg.prefix)
                if _finds(seg.mm, found, source.pos, end):
                    report = ScanReport()
                    for frame in scan(seg.mm, source.pos, end, source.after, report, seg.version):
                        if holds(frame.payload, found, identifier, seg.prefix):
                            if durable is None:
                                return "pending"
                            durable(identifier)
                            self._withdrawn.add(identifier)
                            return "withdrawn"
                if source.window and self._in_window(source, found, identifier):
                    return "in_flight"
        return None

    def held_elsewhere(self, identifier: str) -> bool:
        """Whether a segment this journal does not hold (another live process's,
        or a dead one's not adopted yet) has *identifier* past its cursor:
        waiting there, or taken and not settled (its owner alone knows which).

        Reads the files without locking or changing anything.
        """
        with self._read_lock:
            mine = {source.seg.path for source in self._sources}
        for path in segments.list_segments(self.directory):
            if path in mine:
                continue
            if _segment_holds(path, identifier):
                return True
        return False

    def _in_window(self, source: _Source, found: tuple[bytes, ...], identifier: str) -> bool:
        """Whether *identifier* (*found*: its needles) is among *source*'s frames
        read and not settled."""
        seg = source.seg
        after, start = seg.cursor
        start = max(start, segments.HEADER_SIZE)
        if not _finds(seg.mm, found, start, source.pos):
            return False
        for frame in scan(seg.mm, start, source.pos, after, ScanReport(), seg.version):
            entry = source.window.get(frame.seq)
            if (
                entry is not None
                and not entry[1]
                and holds(frame.payload, found, identifier, seg.prefix)
            ):
                return True
        return False

    def _settle_taken(self, event: RawEvent) -> None:
        """*event*, taken and not sent, is done with (the read lock held)."""
        entry = self._taken.pop(id(event), None)
        if entry is None:
            return
        source = entry[2]
        if not entry[1]:
            entry[1] = True
            self._count_settled(source)
        self._advance(source)

    def adopt_orphans(self) -> int:
        """Take over the segments no live process holds. Returns how many events they hold."""
        if self._closed:
            return 0
        known = {source.seg.path for source in self._sources}
        found = 0
        try:
            with DirectoryLock(self.directory):
                for path in segments.list_segments(self.directory):
                    if path in known:
                        continue
                    found += self._adopt(path)
        except SegmentError as exc:
            logger.error("the spool's journal could not be read: %s", exc)
        return found

    def _adopt(self, path: str) -> int:
        try:
            seg = segments.adopt(path)
        except SegmentError as exc:
            _set_aside_unreadable(path, exc)
            return 0
        if seg is None:
            return 0
        source = _Source(seg, own=False)
        report = ScanReport()
        count = sum(
            1 for _ in scan(seg.mm, source.pos, seg.size, source.after, report, seg.version)
        )
        if count == 0 and not report.corrupt:
            seg.delete()
            return 0
        source.known = count
        if self._withdrawn_loader is not set:
            self._withdrawn |= self._withdrawn_loader()
        if self._requested_loader is not set:
            self._requested |= self._requested_loader()
        with self._read_lock:
            self._sources.append(source)
        return count

    # -- counts ---------------------------------------------------------------------------

    def pending(self) -> int:
        """Events written (this process's, and those adopted) and not settled yet."""
        with self._read_lock:
            adopted = sum(s.known for s in self._sources if not s.own)
        return self.written - self._settled_own + adopted

    def waiting(self) -> bool:
        """Whether anything waits to be taken (given back, or not read yet)."""
        with self._read_lock:
            if self._retry:
                return True
            unsettled = self.written - self._settled_own
            unsettled += sum(s.known for s in self._sources if not s.own)
            return unsettled > len(self._taken)

    def flush_point(self) -> int:
        """The number of the newest frame this process wrote (0: none yet)."""
        return self._next_seq - 1

    def pending_upto(self, point: int) -> int:
        """This process's events numbered up to *point* not settled, and every adopted one."""
        with self._read_lock:
            unread = max(0, point - self._own_read)
            in_flight = sum(
                1
                for source in self._sources
                if source.own
                for seq, entry in source.window.items()
                if seq <= point and not entry[1]
            )
            adopted = sum(s.known for s in self._sources if not s.own)
        return unread + in_flight + adopted

    def evict_oldest(self) -> list[RawEvent]:
        """Make room (``overflow="drop_oldest"``): settle, unsent, what is left to
        read of the oldest segment; returns those events, for ``on_delivery_error``."""
        with self._read_lock:
            sources = list(self._sources)
        for source in sources:
            if source.own and source.seg is self._seg:
                continue  # the segment being written: evicting it frees nothing
            out: list[RawEvent] = []
            with self._read_lock:
                while True:
                    before = len(out)
                    self._read(source, before + 1000, out)
                    if len(out) == before:
                        break
            if out:
                self.settle(out)
                return out
        return []

    def room(self) -> bool:
        """Whether a new segment may be made (``max_bytes``)."""
        return self.bytes() + self.segment_bytes <= self.max_bytes

    def bytes(self) -> int:
        """Bytes of segments on disk (every process's)."""
        return len(segments.list_segments(self.directory)) * self.segment_bytes

    # -- lifecycle ----------------------------------------------------------------------

    def fork_locks(self) -> list[Any]:
        """The locks a fork holds (:mod:`.forks`), in the order this class nests them."""
        return [self._sync_cond, self._lock, self._read_lock, self._sync_lock]

    def after_fork_in_child(self) -> None:
        """A forked child writes its own segments; the parent's stay the parent's."""
        for source in self._sources:
            source.seg.forget()
        self._start()

    def close(self) -> None:
        """Seal the current segment; delete the segments whose events all settled."""
        self._stop.set()
        with self._lock:
            self._closed = True
            seg = self._seg
            if seg is not None:
                if self.sync != "normal" or self.sync_interval > 0:
                    with self._sync_lock:
                        seg.sync()
                seg.seal()
            # A write from now on finds no segment: the slow path, whose roll
            # refuses it (counted as dropped), never a frame into a segment
            # that may be deleted below. (After the sync: a group commit
            # waiting on this segment takes a new one for "synced".)
            self._seg = None
        with self._read_lock:
            for source in list(self._sources):
                self._advance(source)
            for source in self._sources:
                source.seg.close()
            self._sources = []


def _packer(length: int) -> Callable[..., None]:
    """``pack(buffer, offset, length, crc, seq, payload)`` for a *length*-byte payload."""
    pack = struct.Struct(f"<IIQ{length}s").pack_into
    if length <= _PACKED_UP_TO:
        _PACKERS[length] = pack
    return pack


def os_makedirs(directory: str) -> None:
    os.makedirs(directory, mode=0o700, exist_ok=True)


def _set_aside_unreadable(path: str, exc: BaseException) -> None:
    """A file that is not a segment (a crash while one was made): empty goes, the rest is kept."""
    try:
        with open(path, "rb") as f:
            empty = not f.read(1 << 16).strip(b"\x00")
        if empty and os.path.getsize(path) <= (1 << 16):
            os.unlink(path)
            return
        directory = os.path.join(os.path.dirname(path), "corrupt")
        os.makedirs(directory, exist_ok=True)
        os.rename(path, os.path.join(directory, os.path.basename(path)))
        logger.error("the spool's journal file %s could not be read (%s): moved aside", path, exc)
    except OSError:
        pass


def inspect(directory: str) -> list[RawEvent]:
    """Every event waiting in the journal *directory*, every process's, oldest
    segment first: read without locking or changing anything (``meterstream
    spool status`` and ``export``)."""
    out: list[RawEvent] = []
    for path in segments.list_segments(directory):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        version = segments.version_of(data) if len(data) >= segments.HEADER_SIZE else None
        if version is None:
            continue
        seq, offset = _cursor_of(data)
        prefix = segments.prefix_of(data)
        for frame in scan(data, offset, len(data), seq, ScanReport(), version):
            try:
                out.append(decode_event(frame.payload, prefix))
            except ValueError:
                continue
    return out


def _finds(buf: Any, found: tuple[bytes, ...], start: int, end: int) -> bool:
    """Whether one of the needles *found* is in ``buf[start:end]``."""
    return any(buf.find(needle, start, end) >= 0 for needle in found)


def _segment_holds(path: str, identifier: str) -> bool:
    """Whether the segment at *path* has *identifier* past its cursor (mapped read-only)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size < segments.HEADER_SIZE:
            return False
        view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)  # a descriptor of our own: the owner's flock is not touched
    try:
        version = segments.version_of(view)
        if version is None:
            return False
        seq, offset = _cursor_of(view)
        prefix = segments.prefix_of(view)
        found = needles(identifier, prefix)
        if not _finds(view, found, offset, size):
            return False
        return any(
            holds(frame.payload, found, identifier, prefix)
            for frame in scan(view, offset, size, seq, ScanReport(), version)
        )
    finally:
        view.close()


def _cursor_of(data: Any) -> tuple[int, int]:
    seq, offset = _CURSOR.unpack_from(data, 32)
    return seq, max(offset, segments.HEADER_SIZE)
