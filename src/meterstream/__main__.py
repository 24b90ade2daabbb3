"""``python -m meterstream``: the command line."""

import sys

from meterstream.cli import main

sys.exit(main())
