"""Prefect flows (one module per pipeline) and the ``codeflow`` command line."""
