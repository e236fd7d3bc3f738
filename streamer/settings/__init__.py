"""Settings: one home, no import cycle (model -> file, redis_url; live -> model).

Modules:
  model           Settings: the only reader of the environment; validated once, frozen.
  file            STREAMER_CONFIG_FILE: KEY=VALUE lines, precedence, diffs, what is reloadable.
  live            reloads without restart: the live holder, file watcher, SIGHUP.
  redis_url       REDIS_URL forms: one server, Sentinel or Cluster.
  validation      configuration errors in words, with file and line; PEM file checks.
  extras          optional parts of the install (pip extras), checked before a command needs one.
"""
