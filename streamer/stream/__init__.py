"""Stream edge: everything that talks to Faust, and the Redis exchange between workers.

Modules:
  app             the Faust app, the `state` table co-partitioned with the events topic.
  transport       Faust transport override (`streamer-kafka://`): batches per partition.
  faust_compat    every private Faust member used, typed and checked at import.
  ingest          the batch handler: one pure call per batch, then send, wait and ack.
  exchange        requests and partition answers over Redis (merges, reconcile), one row codec.
  startup         the worker's start checks, each failure one line.

The ack/commit protocol (exactness across kill -9) is written once, as numbered steps, in
`stream.ingest`, the module that runs it. The worker (`modes.worker`) wires this package to
the merger (`trending.merger`) and the jobs; nothing here imports `trending/` or `jobs/`.
"""
