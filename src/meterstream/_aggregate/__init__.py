"""Pre-aggregation of sum meters: the exact arithmetic (sums, the 15-digit split, windows,
identifiers), the in-memory aggregator, and the settings that say which meters aggregate.
"""
