"""The sandbox benchmark: ``python -m benchmarks.sandbox``."""
