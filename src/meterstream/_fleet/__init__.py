"""Fleet mode: NATS JetStream (connecting, the stream), the exporter that hands events to
it, and the relays that deliver them to Stripe, with their shared budget and aggregation.
"""
