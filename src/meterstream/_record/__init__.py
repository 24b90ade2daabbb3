"""Recording: the decorators, ``Call``, ``metering()``, streams, the customer in context,
the checks an event passes before it is queued, and the recorded tuple with its identifiers.

The decorators see a client only through the :class:`~meterstream._record.recorder.Recorder`
protocol, so nothing here imports the client.
"""
