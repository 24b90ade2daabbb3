"""Delivery: the bounded buffer, the sender threads, batches on their way (the ledger),
retries and their pacing, splitting a refused batch, and handing evictions back.
"""
