"""The ``meterstream`` command run as a person runs it: a real process, in an
environment without the caller's ``METERSTREAM_*`` or ``STRIPE_API_KEY``."""

from __future__ import annotations

import os
import subprocess
import sys

KEY = "sk_test_cli"


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment less meterstream's, Stripe's and Metronome's
    variables, plus *env*."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("METERSTREAM_", "METRONOME_"))}
    out.pop("STRIPE_API_KEY", None)
    out.update(env or {})
    return out


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m meterstream *args``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "meterstream", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(env),
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], flag: str) -> None:
    """Exit 2 with one line naming *flag*, no traceback, no setting's internal name."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert flag in lines[0]
    assert "Traceback" not in result.stderr
    # internal setting names mean nothing to a person at a shell
    for internal in ("api_base", "max_retry_time", "exporter:", "api_key"):
        assert internal not in lines[0]
