"""``MeterClient``: the facade that wires the pipeline (record path, buffer or spool,
delivery, exporter, aggregation), what ``stats()`` reports, and every live client.
"""
