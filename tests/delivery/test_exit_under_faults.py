"""A process exiting while Stripe fails some requests still delivers everything."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers.delivery import API_KEY
from meterstream.emulator import Emulator


@pytest.mark.slow
def test_exit_with_20_percent_500s_delivers_every_event_within_shutdown_timeout(
    emulator: Emulator,
) -> None:
    emulator.set_faults(fail_500=0.2)
    script = textwrap.dedent(
        f"""
        import meterstream
        meterstream.configure(api_key={API_KEY!r}, api_base={emulator.api_base!r},
                              stream_base={emulator.stream_base!r}, shutdown_timeout=2.0,
                              retry_initial_delay=2.0, retry_max_delay=20.0)
        for i in range(3000):
            meterstream.record("api_calls", 1, customer="cus_exit", identifier=f"exit-{{i}}")
        # no flush(): the interpreter exits (as a worker does on SIGTERM) with
        # batches queued and some waiting to retry
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert emulator.state.total("api_calls", "cus_exit").count == 3000
