"""Stream mode: the Faust app, lean transport, partition state, partials + merger, sink.

Modules:
  transport       Faust transport override (`streamer-kafka://`): batches per partition.
  faust_compat    every private Faust member used, typed and checked at import.
  app             the Faust app, the `state` table co-partitioned with the events topic.
  state           one partition's window counters + dedup ids, made durable as records.
  ingest          the batch handler: decode, DLQ, forward, dedup, count, record, ack.
  publisher       per-partition partials in Redis; one merger publishes the global top-K.
  reconcile_hook  complete-window partials gathered for `jobs.reconcile`.
  sink            batched ClickHouse inserts with a bounded buffer.
  worker          `streamer worker`: wires it all, HTTP, jobs, signals, watchdog.

Exactness across kill -9 (at-least-once delivery + dedup):
  * every accepted event's id and its bucket increment go into the same changelog record
    (one table key per record), so ids and counts are durable together or not at all;
  * a batch's messages are acked only after its record, dead letters and forwards are
    acknowledged by the broker, and acked in offset order, so Faust never commits an offset
    whose effects could be lost;
  * after a crash Kafka re-delivers from the committed offset: events already in a durable
    record are duplicates by id, the rest are counted for the first time.
"""
