"""A plain HTTP forward proxy (CONNECT and absolute-form) for bench_delivery --proxy.

    python benchmarks/forward_proxy.py [--port 8899]

The tests' proxy (``tests/helpers/net_servers.py``) in a process of its own,
so that its work is not charged to the client being measured. A script.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.helpers.net_servers import ForwardProxy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8899)
    args = parser.parse_args()
    with ForwardProxy(port=args.port) as proxy:
        print(f"proxy on {proxy.url}", flush=True)
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
