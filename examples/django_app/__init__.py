"""A metered AI search API on Django (see README.md)."""
