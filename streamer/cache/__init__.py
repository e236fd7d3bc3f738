"""Redis edge: atomic publishing of the caches and the one-writer lock."""
