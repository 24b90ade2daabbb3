"""Settings: the declarations, their parsers, and the generated reference table.

The bottom layer: it imports nothing of meterstream but ``errors``. The
parsers of the settings other packages own (``aggregate``, the network's,
NATS's) live here too, in :mod:`.aggregate`, :mod:`.network` and
:mod:`.nats`, so that reading a setting never imports what uses it.
"""
