"""Settings: the declarations, their parsers, and the generated reference table.

The bottom layer: it imports nothing of meterstream but ``errors``.
"""
