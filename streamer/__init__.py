"""streamer: exact, stream-driven trending and suggested-users caches."""

__version__ = "0.1.0"
