"""The search benchmark: ``python -m benchmarks.search``."""
