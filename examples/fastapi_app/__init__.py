"""A metered AI search API on FastAPI (see README.md)."""
