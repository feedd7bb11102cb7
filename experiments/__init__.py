"""Reproducible runs: the synthetic CRM world, training, evaluation and benchmarks."""
