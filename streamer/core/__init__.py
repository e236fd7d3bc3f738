"""Pure core: no I/O. Scoring, windows, top-K, dedup, suggestions, payloads."""
