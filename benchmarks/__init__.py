"""Benchmark suite of the streamer: every figure beside a same-run baseline (see RESULTS.md)."""
