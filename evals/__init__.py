"""Eval harness, benchmarks and small bundled datasets."""
