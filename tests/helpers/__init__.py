"""What the tests share, imported as ``from helpers.poll import wait_for``.

pytest puts ``tests/`` on ``sys.path`` (the rootdir-relative import mode), so
this package is importable from every test module, conftest and child
program started with ``tests/`` on ``PYTHONPATH``. Fixtures live in the
conftests; the programs tests start as child processes live in ``apps/``.

* ``poll``: the one polling helper, ``wait_for``.
* ``ports``: a free port on 127.0.0.1.
* ``recorded``: a customer, two exceptions, readers of the memory exporter.
* ``emulator_api``: the emulator's wire format spoken over httpx, a fake clock.
* ``webhook_receiver``: a real webhook endpoint that records what it is sent.
* ``webhooks``: Stripe's error reports: bad events, thin events, signatures.
* ``hostile_server``: a raw-socket stand-in for Stripe that misbehaves on cue.
* ``net_servers``: the emulator over TLS, and a forward proxy.
* ``delivery``: what delivery tests check: each event once, stats that add up.
* ``spool``: the spool's child processes, killed at a chosen moment.
* ``aggregate``: uses with known totals, and the totals the emulator stored.
* ``nats_server``, ``fleet``, ``fleet_processes``, ``holding_proxy``: real
  nats-server processes, an in-process relay, relay and producer processes,
  a proxy that keeps Stripe's answer from the relay.
"""
