"""A chat endpoint on FastAPI billed per token per customer (see README.md)."""
