"""Benchmarks: each prints a readable table and writes JSON, baselines from the same run."""
