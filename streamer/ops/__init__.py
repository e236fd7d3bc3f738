"""Operations edge: metrics, HTTP endpoints, logging, the stop sequence.

Modules:
  metrics         every Prometheus metric, defined once.
  http            /metrics, /healthz, /readyz.
  logging         structured logging (JSON or text) with a correlation id, URL passwords masked.
  shutdown        the one stop sequence of every long-running command.
  memory          allocator settings, the start-up heap freeze, the library memory defaults overridden.
"""
