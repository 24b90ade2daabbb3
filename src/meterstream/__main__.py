"""``python -m meterstream``: the command line."""

import sys

from meterstream.cli._main import main

sys.exit(main())
