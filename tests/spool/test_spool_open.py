"""Bad days at MeterClient(...): a spool_path that cannot be a spool, and a corrupt spool."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

import meterstream
from helpers.spool import assert_each_once
from meterstream.emulator import Emulator
from meterstream.errors import ConfigurationError


def _refused(path: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        meterstream.MeterClient(exporter="memory", spool_path=path)
    message = str(info.value)
    assert "spool_path" in message
    return message


def test_a_directory_that_does_not_exist_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "meterstream.db"
    _refused(str(path))
    assert not path.parent.exists(), "the directory was created"


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    text = b"a user's file, not SQLite\n" * 200
    path.write_bytes(text)
    _refused(str(path))
    assert path.read_bytes() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_directory_given_as_the_spool_is_refused(tmp_path: Path) -> None:
    _refused(str(tmp_path))


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_a_place_where_no_file_can_be_created_is_refused_even_as_root() -> None:
    _refused("/proc/meterstream-spool.db")


def test_a_corrupt_spool_is_moved_aside_and_recording_goes_on(
    tmp_path: Path,
    emulator: Emulator,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    path = tmp_path / "meterstream.db"
    # A SQLite header, then pages of garbage.
    garbage = b"SQLite format 3\x00" + bytes(range(256)) * 64
    path.write_bytes(garbage)
    client = make_client(emulator.url, spool_path=str(path))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("meterstream.db.corrupt-")]
    assert len(aside) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert aside[0].read_bytes() == garbage, "the corrupt file was changed, not moved aside"
    client.record("api_calls", customer="cus_1", identifier="after-corrupt")
    assert client.flush(10), client.stats()
    assert_each_once(emulator, {"after-corrupt"})
    assert os.path.getsize(path) > 0
