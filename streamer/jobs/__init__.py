"""Periodic jobs: interface, runner, trending, suggestions, reconcile (no stream imports)."""
