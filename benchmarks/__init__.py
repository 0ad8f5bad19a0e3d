"""Benchmarks; each prints its own table (see RESULTS.md)."""

from config.native import quiet_blas_threads

quiet_blas_threads()  # as the `codeflow` command does, before any benchmark imports numpy
