"""Every command's entry point, built from Settings (`streamer.cli` dispatches here).

Modules:
  worker          `streamer worker`: the Faust app, the merger, the sink, the jobs and HTTP.
  jobs_mode       `streamer jobs`: ClickHouse-only mode, also the standby beside stream workers.
  sink_mode       `streamer sink`: only the ClickHouse sink consumer group.
  init_mode       `streamer init`: schema and topics of a deployment (idempotent).
  demo_mode       `streamer demo`: the whole system on this machine.
  admin           small commands: check-config, schema, sample, top.
"""
