"""What the tests share, imported as ``from helpers.poll import wait_for``.

pytest puts ``tests/`` on ``sys.path`` (its default "prepend" import mode, as
``tests/`` has no ``__init__.py``), so this package is importable from every
test module, conftest, and child program started with ``tests/`` on
``PYTHONPATH``. Fixtures live in the conftests; the programs tests start as
child processes live in ``apps/``.

* ``poll``: the one polling helper, ``wait_for``.
* ``clients``: the factory behind the ``make_client`` fixture.
* ``ports``: a free port on 127.0.0.1.
* ``recorded``: a customer, two exceptions, readers of the memory exporter.
* ``emulator_api``: the emulator's wire format spoken over httpx, a fake clock.
* ``webhook_receiver``: a real webhook endpoint that records what it is sent.
* ``webhooks``: Stripe's error reports: bad events, thin events, signatures.
* ``hostile_server``: a raw-socket stand-in for Stripe that misbehaves on cue.
* ``net_servers``: the emulator over TLS, and a forward proxy.
* ``http11``: a scripted raw-socket server for the lean HTTP/1.1 client's tests.
* ``delivery``: what delivery tests check: each event once, stats that add up.
* ``spool``: the spool's child processes, killed at a chosen moment.
* ``aggregate``: uses with known totals, and the totals the emulator stored.
* ``nats_server``, ``fleet``, ``fleet_processes``, ``holding_proxy``: real
  nats-server processes, an in-process relay, relay and producer processes,
  a proxy that keeps Stripe's answer from the relay.
"""
