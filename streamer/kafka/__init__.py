"""Kafka edge, outside Faust: client settings, topic admin, the sink's consumer group.

Modules:
  client          connection settings of every Kafka client: TLS, SASL, replication.
  admin           topic administration (events and dead-letter topics, partition counts).
  sink_consumer   the ClickHouse sink as its own consumer group: at-least-once into post_events.
"""
