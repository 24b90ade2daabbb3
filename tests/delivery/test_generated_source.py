"""Code compiled with ``exec`` (the buffer's append, the constant-value record
path) shows its source in tracebacks and to ``inspect``, as attrs' generated
methods do: it is registered with ``linecache`` under a file name of its own."""

from __future__ import annotations

import inspect
import linecache
import traceback

import pytest

import meterstream
from meterstream._delivery import buffer as _buffer
from meterstream._delivery.buffer import Buffer
from meterstream.errors import MissingCustomerError


class _ExplodingOverflow(Buffer):
    def overflow(self) -> bool:
        raise RuntimeError("overflow broke")


def _frames_in_generated_code(exc: BaseException) -> list[traceback.FrameSummary]:
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename.startswith(_buffer.APPEND_FILENAME_PREFIX)
    ]


def test_a_traceback_through_the_buffers_append_shows_its_source_line() -> None:
    buffer = _ExplodingOverflow(0)  # full at once: put() asks overflow()
    with pytest.raises(RuntimeError, match="overflow broke") as raised:
        buffer.put(("calls", "cus_1", 1, 0.0, "id-1", None))
    (frame,) = _frames_in_generated_code(raised.value)
    assert frame.name == "put"
    assert frame.line == "if len(items) >= max_size and not overflow():"
    text = "".join(traceback.format_exception(raised.value))
    assert "if len(items) >= max_size and not overflow():" in text


def test_a_traceback_through_the_constant_record_path_shows_its_source_line() -> None:
    client = meterstream.MeterClient(exporter="memory", on_missing_customer="raise")
    try:
        with pytest.raises(MissingCustomerError) as raised:
            client.record_constant("calls", 1, None, None)
        (frame,) = _frames_in_generated_code(raised.value)
        assert frame.name == "record_constant"
        assert frame.line == "return general(event_name, value, customer, dimensions)"
    finally:
        client.shutdown(0)


def test_inspect_shows_the_generated_source_and_clients_share_one_entry() -> None:
    first = meterstream.MeterClient(exporter="memory")
    second = meterstream.MeterClient(exporter="memory")
    try:
        source = inspect.getsource(first.record_constant)
        assert source.startswith("def record_constant(event_name, value, customer, dimensions):")
        assert "append(" in source and "wake.set()" in source
        assert "append(item)" in inspect.getsource(first._buffer.put)
        # The same text compiled for every client: one linecache entry, not one each.
        filename = first.record_constant.__code__.co_filename
        assert second.record_constant.__code__.co_filename == filename
        linecache.checkcache()  # drops entries of files gone from disk, not these
        assert linecache.getlines(filename) == source.splitlines(True)
    finally:
        first.shutdown(0)
        second.shutdown(0)
