"""Benchmark entry points; results with command, data size and machine go to docs/benchmarks.md."""
