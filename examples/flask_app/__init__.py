"""A metered AI search API on Flask (see README.md)."""
