"""The durable spool: a SQLite file between ``record()`` and delivery, its schema and
checkpoints, group commit, the delivery queue, the processes sharing it, what it keeps
after delivery, its admin commands, its sink on the record path, and aggregation in it.
"""
