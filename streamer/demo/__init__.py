"""Embedded demo (`streamer demo`, entry in modes/demo_mode.py): services, traffic, live view.

Modules:
  options         what one demo run was asked to do, and its fixed settings.
  services        local redis-server and tansu processes on free loopback ports (demo and tests).
  steps           the steps of the demo: services, topics, graph, worker, traffic, final check.
  generate        deterministic synthetic data: follow graph and engagement events.
  traffic         engagement traffic, and an exact record of what reached the broker.
  poll            what the demo reads, the way a real consumer would.
  dashboard       what the live view shows, computed from snapshots.
  live            how the demo talks to the screen (rich live view or plain lines).
  summary         the end of a run: did the published list match, in sentences.
  people          the burst from one account, and the list counted in people beside the events one.
"""
