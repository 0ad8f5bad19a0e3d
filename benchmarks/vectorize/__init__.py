"""The vectorize benchmark: ``python -m benchmarks.vectorize``."""
