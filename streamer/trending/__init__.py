"""Trending: the stream merger, the ClickHouse job, the standby and their one write path."""
