"""Pure core: no I/O (tests/test_layout.py checks it). One batch at a time, small typed functions.

Modules:
  events          decode and validate engagement events exactly as the contract says.
  batch           the whole pure step of one fetched batch of one partition: values in, effects out.
  partitioning    where a post's events belong: Kafka's default partitioner.
  partition_state  one partition's exact state and the change records that make it durable.
  window_state    exact sliding-window counters of one partition, packed.
  post_index      post id -> window slot: a numpy open-addressing table, looked up per batch.
  window          trending window bounds.
  dedup           event-id dedup bounded by the window.
  records         change records: one batch's accepted events, packed, one changelog message.
  scoring         the trending score, its exact ranking key, the exact merge of partials.
  top_index       exact incremental top-k of one partition.
  people          counting people: distinct accounts per post and type over the window.
  sink_rows       the ClickHouse sink's rows of fetched messages, as columns.
  sink_tap        the stream hands the sink its decoded rows: offsets, follow, give back.
  publish_policy  which source the merger publishes, when a standby takes over, freshness.
  reconcile       the stream snapshot type, its comparison with ClickHouse, the drift policy.
  suggest         suggested users: Adamic-Adar over second-degree follows.
  suggest_plan    planning a suggestions run: what changed since the last one, the shards.
  payloads        every Redis key name and the JSON encoding of every cached value.
"""
