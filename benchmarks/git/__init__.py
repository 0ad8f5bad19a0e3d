"""The git benchmark: ``python -m benchmarks.git``."""
