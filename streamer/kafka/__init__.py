"""Kafka edge: client settings, topic admin and the sink's plain consumer group."""
