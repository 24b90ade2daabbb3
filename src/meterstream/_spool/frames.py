"""How the journal keeps one recorded event: a frame, checked on its own.

A frame is a 16-byte header (payload length, CRC-32, sequence number: little
endian ``u32 u32 u64``) and the payload, padded to 8 bytes. The payload is
the recorded tuple ``(event_name, customer, value, timestamp, identifier,
dimensions)`` in :mod:`marshal`'s format 4 (read by every Python since 3.4;
no JSON on the record path); a Decimal value is kept as ``("d", text)``, and
a generated identifier as its number (its text is the segment's prefix and
the number: :func:`decode_event`). The
checksum covers the payload's *length* bytes and is seeded with the sequence
number (its low 32 bits): a frame whose header or payload was half written
(a SIGKILL during the copy) does not check. A wrong length checks other
bytes; a wrong sequence number starts the CRC from another value, which for
payloads of one length always gives another result (a CRC is linear in its
start value).

:func:`scan` reads the frames of a segment from an offset: it stops at the
first zero length (the end: a segment is preallocated with zeros and never
reused), and at a frame that does not check it looks further on for a frame
that does. None found: a torn tail, the record being written when its process
died, whose ``record()`` never returned. One found: the bytes between are
corruption, skipped and counted.
"""

from __future__ import annotations

import marshal
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional, Union

from meterstream._record.events import RawEvent

__all__ = [
    "FRAME_HEADER",
    "MAX_PAYLOAD",
    "Frame",
    "ScanReport",
    "complete",
    "decode_event",
    "encode_event",
    "frame_size",
    "holds",
    "needles",
    "scan",
    "seed",
]

FRAME_HEADER = struct.Struct("<IIQ")
#: The largest payload a frame holds (a recorded event is a few hundred bytes).
MAX_PAYLOAD = 1 << 20
#: How far past the last good sequence number a frame found after corruption may be.
SEQ_REACH = 1 << 24
_MASK = 0xFFFFFFFF
_HEADER_SIZE = FRAME_HEADER.size


def seed(length: int, seq: int) -> int:
    """The CRC-32's start value for a frame: its sequence number's low 32 bits.

    (*length* is not part of it: the checksum covers *length* bytes.
    ``zlib.crc32`` takes the low 32 bits of the number itself, which is how
    the journal's record path gives it.)
    """
    return seq & _MASK


def frame_size(length: int) -> int:
    """Bytes a frame with a *length*-byte payload takes: header, payload, padding to 8."""
    return _HEADER_SIZE + ((length + 7) & ~7)


def encode_event(event: RawEvent) -> bytes:
    """The payload of *event*: its identifier as given (text, or a generated number)."""
    name, customer, value, ts, identifier, dimensions = event
    if type(value) is not int and type(value) is not float:
        value = encode_value(value)
    row: Any = (name, customer, value, ts, identifier, dimensions)
    return marshal.dumps(row, 4)


def encode_value(value: Any) -> Any:
    """A value marshal keeps as is, or a Decimal as ``("d", its text)``."""
    if isinstance(value, Decimal):
        return ("d", str(value))
    return value


def decode_event(payload: Union[bytes, memoryview], prefix: Optional[str]) -> RawEvent:
    """The recorded tuple a payload of a segment whose prefix is *prefix* holds.

    Raises:
        ValueError: the payload is not a recorded tuple.
    """
    try:
        decoded = marshal.loads(payload)
        if type(decoded) is not tuple or len(decoded) != 6:
            raise ValueError("not a 6-tuple")
    except (EOFError, TypeError, ValueError) as exc:
        raise ValueError(f"not a recorded event ({exc})") from None
    return complete(decoded, prefix)


def complete(event: Any, prefix: Optional[str]) -> RawEvent:
    """A loaded payload as the event it was recorded: a Decimal value, the
    dimensions as a dict, a numbered identifier as text after *prefix*.

    Raises:
        ValueError: a numbered identifier in a segment without a prefix.
    """
    name, customer, value, ts, identifier, dimensions = event
    if type(value) is tuple:
        value = Decimal(value[1])
    if type(dimensions) is tuple:
        dimensions = dict(dimensions)
    if type(identifier) is int:
        if prefix is None:
            raise ValueError("a numbered identifier in a segment without a prefix")
        identifier = prefix + str(identifier)
    return (name, customer, value, ts, identifier, dimensions)


def needles(identifier: str, prefix: Optional[str]) -> tuple[bytes, ...]:
    """Byte strings one of which a payload holding *identifier* contains: its
    text, and in a segment whose prefix begins it, its number as marshal writes
    it (without the type byte, which may carry marshal's reference flag)."""
    text = identifier.encode("utf-8")
    if prefix is not None and identifier.startswith(prefix):
        digits = identifier[len(prefix) :]
        if digits.isascii() and digits.isdigit() and (digits == "0" or digits[0] != "0"):
            return (text, marshal.dumps(int(digits), 4)[1:])
    return (text,)


def holds(payload: bytes, found: tuple[bytes, ...], identifier: str, prefix: Optional[str]) -> bool:
    """Whether *payload* (of a segment whose prefix is *prefix*) is the event
    *identifier*; *found* are its :func:`needles`."""
    if not any(needle in payload for needle in found):
        return False
    try:
        return decode_event(payload, prefix)[4] == identifier
    except ValueError:
        return False


@dataclass(frozen=True)
class Frame:
    """A frame that checks: where it starts and ends, its sequence number and payload."""

    offset: int
    end: int
    seq: int
    payload: bytes


@dataclass
class ScanReport:
    """What a scan found besides good frames."""

    #: Runs of bytes that did not check, with good frames after them.
    corrupt: int = 0
    #: Bytes those runs took.
    corrupt_bytes: int = 0
    #: A frame that did not check at the end (a record cut short by a crash).
    torn: bool = False
    #: Where the scan stopped: the offset of the next frame to be written.
    end: int = 0


def _check(buf: Any, offset: int, size: int, after: int) -> Union[Frame, None]:
    """The frame at *offset* if it checks and numbers past *after*, else None."""
    if offset + _HEADER_SIZE > size:
        return None
    length, crc, seq = FRAME_HEADER.unpack_from(buf, offset)
    if not 0 < length <= MAX_PAYLOAD or offset + frame_size(length) > size:
        return None
    if not after < seq <= after + SEQ_REACH:
        return None
    start = offset + _HEADER_SIZE
    payload = bytes(buf[start : start + length])
    if zlib.crc32(payload, seed(length, seq)) != crc:
        return None
    return Frame(offset, offset + frame_size(length), seq, payload)


def _next_nonzero(buf: Any, offset: int, size: int) -> int:
    """The offset of the first nonzero byte at or after *offset* (*size*: none)."""
    step = 1 << 16
    while offset < size:
        chunk = bytes(buf[offset : min(size, offset + step)])
        rest = chunk.lstrip(b"\x00")
        if rest:
            return offset + len(chunk) - len(rest)
        offset += len(chunk)
    return size


def scan(buf: Any, offset: int, size: int, after: int, report: ScanReport) -> Iterator[Frame]:
    """The frames that check in ``buf[offset:size]``, numbered past *after*, in order.

    *report* says what was skipped, and where the frames end (``report.end``).
    """
    while True:
        report.end = offset
        if offset + _HEADER_SIZE > size:
            return
        length = FRAME_HEADER.unpack_from(buf, offset)[0]
        if length == 0 and _next_nonzero(buf, offset, size) == size:
            return  # the end: zeros from here on
        frame = _check(buf, offset, size, after)
        if frame is None:
            found = _search(buf, offset + 8, size, after)
            if found is None:
                report.torn = True
                return
            report.corrupt += 1
            report.corrupt_bytes += found.offset - offset
            frame = found
        yield frame
        after = frame.seq
        offset = frame.end


def _search(buf: Any, offset: int, size: int, after: int) -> Union[Frame, None]:
    """The first frame that checks at an 8-byte boundary from *offset* on."""
    while offset < size:
        offset = _next_nonzero(buf, offset, size) & ~7
        if offset >= size:
            return None
        frame = _check(buf, offset, size, after)
        if frame is not None:
            return frame
        offset += 8
    return None
