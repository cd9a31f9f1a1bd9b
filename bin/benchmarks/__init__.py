"""Benchmark suites dispatched by bin/benchmark.py."""
