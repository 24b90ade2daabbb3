"""A producer process: publishes COUNT uses of ``tokens`` (ints and Decimals) through NATS."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for helpers

from helpers.aggregate import publish_uses


def main() -> int:
    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    publish_uses(url, prefix, count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
