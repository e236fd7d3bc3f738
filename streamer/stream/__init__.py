"""Stream mode: the Faust app, lean transport, partition state, partials + merger, sink."""
