"""One journal segment: a preallocated file, mapped shared, owned by one process.

A segment is created at its full size (``posix_fallocate``: its blocks are
reserved up front, so a store into the mapping never meets a full disk,
which would be a SIGBUS) and mapped ``MAP_SHARED``: a store into it is in the
kernel's page cache the moment it is made, so it outlives a SIGKILL or an
OOM kill of its process, as a SQLite commit with ``synchronous=NORMAL`` does.
Its writer holds an exclusive ``flock`` on it for as long as it lives; the
kernel drops the lock when the process dies, which is how another process
knows it may deliver what is left (:func:`adopt`). A segment is never renamed
into place or reused: it is created under its final name, written from its
start to its end, and deleted once everything in it has settled and its
cursor says so (or moved aside into ``corrupt/`` when frames in it did not
check).

The 64-byte header: magic and version, the first sequence number, the pid
that created it, the cursor (every frame numbered up to it has settled, and
where the frame after it starts), whether the writer has moved on to a
newer segment (sealed), and (version 2) the writer's identifier prefix as
its 10 random bytes: a frame may hold a generated identifier as its number
alone, which a reader writes out after that prefix. Version 1 (no prefix:
every frame's identifier is text) is read as it is.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from typing import Any, Optional

from meterstream._record.events import prefix_from_bytes, prefix_to_bytes
from meterstream._spool import forks

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "Segment",
    "SegmentError",
    "adopt",
    "create",
    "list_segments",
]

MAGIC = b"MSJRNL01"
HEADER_SIZE = 64
SUFFIX = ".seg"
#: The header this release writes: a prefix in it.
VERSION = 2
#: magic, version, first seq, pid, cursor seq, cursor offset, sealed, the
#: identifier prefix's bytes (version 1: sealed was 8 bytes, then a creation time)
_HEADER = struct.Struct("<8sIxxxxQQQQB10s5x")
_CURSOR = struct.Struct("<QQ")
_CURSOR_AT = 32
_SEALED_AT = 48


class SegmentError(Exception):
    """A segment could not be created or opened (with the OS's reason)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        #: The OS's errno (0: not the OS's doing).
        self.errno = code


class Segment:
    """An open, locked, mapped segment file."""

    __slots__ = (
        "end",
        "fd",
        "first_seq",
        "mm",
        "name",
        "path",
        "pid",
        "prefix",
        "sealed",
        "size",
    )

    def __init__(self, path: str, fd: int, mm: mmap.mmap) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.fd = fd
        self.mm = mm
        self.size = len(mm)
        magic, _, first, pid, _, _, sealed, _ = _HEADER.unpack_from(mm, 0)
        if magic != MAGIC:
            raise SegmentError(f"{path}: not a journal segment")
        self.first_seq: int = first
        self.pid: int = pid
        self.sealed = bool(sealed)
        #: What a numbered identifier in its frames is written after (None: version 1).
        self.prefix = prefix_of(mm)
        #: Where the next frame goes (the writer's) or where the frames end (a reader's).
        self.end = HEADER_SIZE

    @property
    def cursor(self) -> tuple[int, int]:
        """(seq, offset): every frame numbered up to seq has settled; the next starts at offset."""
        seq, offset = _CURSOR.unpack_from(self.mm, _CURSOR_AT)
        return seq, max(offset, HEADER_SIZE)

    def set_cursor(self, seq: int, offset: int) -> None:
        _CURSOR.pack_into(self.mm, _CURSOR_AT, seq, offset)

    def seal(self) -> None:
        """The writer moved on: no frame will be added."""
        struct.pack_into("<B", self.mm, _SEALED_AT, 1)
        self.sealed = True

    def sync(self) -> None:
        """Write the mapping's dirty pages to the disk (fdatasync)."""
        os.fdatasync(self.fd)

    def close(self) -> None:
        """Unmap and close (the lock goes with the last descriptor of it)."""
        try:
            self.mm.close()
        except (BufferError, ValueError):
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass

    def forget(self) -> None:
        """In a forked child: drop the parent's mapping and descriptor without
        touching its lock (closing a copy leaves the parent's lock held)."""
        self.close()

    def delete(self) -> None:
        """Everything in it settled: remove the file, then close it."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.close()

    def move_aside(self) -> str:
        """Frames in it did not check: keep it in ``corrupt/`` for a human, never delete it."""
        directory = os.path.join(os.path.dirname(self.path), "corrupt")
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, self.name)
        os.rename(self.path, target)
        self.close()
        return target


def list_segments(directory: str) -> list[str]:
    """The segment files in *directory*, oldest first (their names sort by creation)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names) if n.endswith(SUFFIX)]


def prefix_of(header: Any) -> Optional[str]:
    """The identifier prefix a segment's header holds (None: version 1, no prefix)."""
    version = struct.unpack_from("<I", header, 8)[0]
    if version < 2:
        return None
    return prefix_from_bytes(bytes(header[49:59]))


def create(
    directory: str, first_seq: int, size: int, prefix: str, written: bool = False
) -> Segment:
    """A new segment in *directory*, *size* bytes preallocated, locked by this process,
    whose numbered identifiers are written after *prefix*.

    Created under the directory's lock, so that no other process sees it
    before it is locked and headed.

    Raises:
        SegmentError: the file could not be created (a full disk, permissions).
    """
    name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
    path = os.path.join(directory, name)
    with DirectoryLock(directory):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SegmentError(f"{path}: {exc.strerror}", exc.errno or 0) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if written:
                _write_zeros(fd, size)  # initialised blocks: a sync then writes data only
                os.fdatasync(fd)
            else:
                _preallocate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            _HEADER.pack_into(
                mm,
                0,
                MAGIC,
                VERSION,
                first_seq,
                os.getpid(),
                first_seq - 1,
                HEADER_SIZE,
                0,
                prefix_to_bytes(prefix),
            )
        except OSError as exc:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            raise SegmentError(f"{path}: {exc.strerror or exc}", exc.errno or 0) from None
    return Segment(path, fd, mm)


def adopt(path: str) -> Optional[Segment]:
    """The segment at *path*, locked by this process, when no live process holds it.

    None when its writer is alive (its lock is held), when it is gone, or
    when it is not a segment yet (being created: the directory's lock is
    held while a segment is made, and the caller holds it).

    Raises:
        SegmentError: the file is there, unlocked, but cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SegmentError(f"{path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    try:
        stat = os.fstat(fd)
        if stat.st_nlink == 0:
            os.close(fd)
            return None  # deleted by its last reader
        if stat.st_size < HEADER_SIZE or os.pread(fd, HEADER_SIZE, 0) == bytes(HEADER_SIZE):
            # Its creator died before writing the header (the directory's lock
            # was free, and so is the file's): nothing was ever written to it.
            os.unlink(path)
            os.close(fd)
            return None
        mm = mmap.mmap(fd, stat.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        os.close(fd)
        raise SegmentError(f"{path}: {exc.strerror or exc}") from None
    try:
        return Segment(path, fd, mm)
    except SegmentError:
        mm.close()
        os.close(fd)
        raise


class DirectoryLock:
    """The journal directory's lock: held while a segment is made or adopted."""

    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, ".lock")
        self._fd = -1

    def __enter__(self) -> None:
        with forks.fds_lock:  # a fork sees the descriptor, or no descriptor
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise SegmentError(f"{self._path}: {exc.strerror}") from None
            forks.directory_fds.add(self._fd)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        with forks.fds_lock:
            forks.directory_fds.discard(self._fd)
            os.close(self._fd)  # the lock goes with it


def _preallocate(fd: int, size: int) -> None:
    """Reserve *size* bytes of disk for the file (so its mapping never meets ENOSPC)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (95, 22):  # EOPNOTSUPP, EINVAL: the file system cannot
                raise
    _write_zeros(fd, size)


def _write_zeros(fd: int, size: int) -> None:
    """Write *size* zero bytes (no fallocate; or for spool_sync="full", whose
    fdatasync would otherwise also commit the conversion of each block)."""
    os.ftruncate(fd, size)
    zeros = b"\x00" * (1 << 16)
    for offset in range(0, size, len(zeros)):
        os.pwrite(fd, zeros[: min(len(zeros), size - offset)], offset)
