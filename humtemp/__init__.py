"""humtemp: sharded temperature/humidity aggregation on Redis."""

__version__ = "1.0.0"
